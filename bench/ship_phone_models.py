"""Fit the phones' nn-Meter block models and ship them as package data.

Why: fitting a phone's model takes about half a minute per phone (per-block-type model selection
with extrapolation splits); a fresh install's first ``nas search --device s21`` should not pay it.
Each shipped file is the device's :class:`predictors.latency.DeviceModel` (gzip-compressed JSON) with
``data_hash`` = :func:`predictors.latency.device.phone_fingerprint`: the block table's sha256 and the
fitting code's ``FIT_VERSION``. ``load_device_model`` uses a shipped file only when that fingerprint
matches; after a change to the table or the fitting code (and a bumped ``FIT_VERSION``), run this
again. ``--check`` exits non-zero when a shipped file is missing or stale.

Run: ``python bench/ship_phone_models.py [--check]``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time

from benchlib import setup

setup()
from predictors.latency.device import SHIPPED_PHONE_MODELS, phone_fingerprint, phone_model  # noqa: E402
from predictors.latency.phone import phone_devices  # noqa: E402
from search_space.files import atomic_write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = []
    for device in phone_devices():
        path = SHIPPED_PHONE_MODELS / f"{device}-latency.json.gz"
        if args.check:
            ok = path.is_file() and json.loads(gzip.decompress(path.read_bytes()))["data_hash"] == phone_fingerprint(device)
            print(f"{device}: {'current' if ok else 'missing or stale'}")
            stale += [] if ok else [device]
            continue
        t0 = time.perf_counter()
        model = phone_model(device, use_shipped=False)
        data = gzip.compress(json.dumps(model.to_dict()).encode(), mtime=0)
        atomic_write(path, data)
        print(f"{device}: fitted in {time.perf_counter() - t0:.0f} s, wrote {path} ({len(data):,} bytes)")
    if stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
