"""Figure: does the candle-normalised latency survive a neighbour that takes the memory bandwidth?

A shared machine's other tenants can load either the cores or the memory system. The farm's candles
(EdgeViT presets, compute-bound at batch 1) cancel what slows candle and candidate alike; a network
whose time goes to memory traffic (a global attention over thousands of tokens: its score matrix
alone is tokens^2 x 4 bytes per head) may slow down more than they do. This bench provokes that
on purpose: each network is measured quiet, then with a memory-bandwidth hog running on the other
core (a process copying a 256 MB array in a loop: ``hog``), then quiet again, all in one store with
one set of reference candles (set quiet, before the first network). It reports, per network, the
raw median and the stored ``norm_ms`` in the three states, hog / quiet (quiet: the geometric mean of
the two quiet runs) and quiet 2 / quiet 1 (the instrument's own repeat a minute later), and whether
the farm flagged the hog run ``disturbed``. Since the memory probe (``MeasureProtocol.memory_probe_mib``)
it also reports each run's session memory ratios over the device's reference and how many sessions
were set aside as beside a busy memory system; ``norm_ms`` of a run the farm calls disturbed is formed
from its stored candle ratios as a clean one's would be, so hog / quiet stays comparable.
``--no-probe`` measures as before the probe (nothing set aside, nothing flagged for memory).

Networks: the three presets and the ``--n`` networks of a random draw (``--seed``, the draw of
``bench/phone_validation.py``) with the largest attention side (tokens per row an attention attends
over), i.e. the most memory-heavy ones. Devices: ``host`` (onnxruntime) and ``host-litert``.

Run: ``python bench/farm_contention.py [--n 5] [--seed 16] [--devices host host-litert]`` (about 10 min);
writes ``bench/results/farm_contention.json`` (``--tag T``: ``farm_contention_T.json``).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import setup, write_result

setup()
import search_space as ss  # noqa: E402
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import Farm, MeasureProtocol, normalised_ms  # noqa: E402
from farm_noise import set_references  # noqa: E402
from phone_validation import attention_side, networks  # noqa: E402


def hog(ready, stop, mb: int = 256) -> None:
    """Copy a ``mb`` MB array into another until ``stop`` is set: a neighbour bound by memory bandwidth,
    not by arithmetic (it does one load and one store per 8 bytes). Sets ``ready`` once copying."""
    a = np.ones(mb * 2 ** 20 // 8)
    b = np.empty_like(a)
    ready.set()
    while not stop.is_set():
        np.copyto(b, a)
        np.copyto(a, b)


def chosen(n: int, seed: int) -> list[tuple[str, ss.EdgeViTConfig]]:
    """The presets and the ``n`` networks of the random draw with the largest attention side."""
    nets = networks(15, 0, seed)  # the presets and phone_validation's random draw of ``seed``
    draw = sorted([c for s, c in nets if s == "random"], key=lambda c: -attention_side(c))[:n]
    names = {c.arch_id: k for k, c in ss.PRESETS.items()}
    return [(names[c.arch_id], c) for s, c in nets if s == "preset"] + [("random", c) for c in draw]


def measure(farm: Farm, device: str, cfg: ss.EdgeViTConfig, with_hog: bool) -> dict:
    ctx = mp.get_context("spawn")  # no fork of a process that holds torch's threads
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=hog, args=(ready, stop), daemon=True) if with_hog else None
    if proc:
        proc.start()
        if not ready.wait(120):
            raise SystemExit("the memory hog did not start in 120 s")
        time.sleep(0.5)
    try:
        m = farm.measure(cfg, get_profile(device))
    finally:
        if proc:
            stop.set()
            proc.join(10)
    norm = m.norm_ms
    if norm is None and m.env.get("candle_ratios"):  # a disturbed run: its ratios, normalised as a clean one's
        norm = normalised_ms(m.env["candle_ratios"], farm.store.candle_references(m.device, m.runtime_version, m.threads))
    ref = m.env.get("memory_reference") or farm.memory_reference(get_profile(device))
    ratios = [r / ref for r in m.env.get("session_memory_ratio") or [] if r and ref]
    return {"status": m.status, "raw_ms": m.median_ms, "norm_ms": norm, "error": m.error,
            "memory_over_reference": [round(r, 3) for r in ratios],
            "memory_busy_sessions": m.env.get("memory_busy_sessions", 0), "memory_busy_ratios": m.env.get("memory_busy_ratios"),
            "sessions": m.env.get("sessions")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--devices", nargs="+", default=["host", "host-litert"])
    ap.add_argument("--tag")
    ap.add_argument("--no-probe", action="store_true", help="measure without the memory probe (as before it)")
    args = ap.parse_args()
    protocol = MeasureProtocol(memory_probe_mib=0) if args.no_probe else MeasureProtocol()
    nets = chosen(args.n, args.seed)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device in args.devices:
            farm = Farm(MeasurementStore(Path(tmp) / f"{device}.sqlite"), cache_dir=Path(tmp) / "cache",
                        protocol=protocol)
            set_references(farm, device)  # quiet, before any network
            print(f"\n{device}: raw / norm_ms, quiet 1, hog, quiet 2 (ms)")
            for kind, cfg in nets:
                r = {state: measure(farm, device, cfg, state == "hog") for state in ("quiet1", "hog", "quiet2")}
                q = {k: float(np.sqrt(r["quiet1"][k] * r["quiet2"][k])) for k in ("raw_ms", "norm_ms")
                     if r["quiet1"][k] and r["quiet2"][k]}
                r.update(kind=kind, attention_side=attention_side(cfg),
                         hog_over_quiet={k: r["hog"][k] / v for k, v in q.items() if r["hog"][k]},
                         quiet_repeat={k: r["quiet2"][k] / r["quiet1"][k] for k in q})
                out.setdefault(device, {})[cfg.arch_id] = r
                fmt = lambda k: " ".join(f"{(r[s][k] or float('nan')):8.2f}" for s in ("quiet1", "hog", "quiet2"))  # noqa: E731
                print(f"  {cfg.arch_id} {kind:12} side {r['attention_side']:>3}  raw {fmt('raw_ms')}  norm {fmt('norm_ms')}"
                      f"  hog/quiet raw {r['hog_over_quiet'].get('raw_ms', float('nan')):.3f}"
                      f" norm {r['hog_over_quiet'].get('norm_ms', float('nan')):.3f}"
                      f"  quiet2/1 norm {r['quiet_repeat'].get('norm_ms', float('nan')):.3f}  hog run {r['hog']['status']}",
                      flush=True)
                print("    memory / reference per session: " + "; ".join(
                      f"{st} {r[st]['memory_over_reference']} ({r[st]['status']}, set aside: {r[st]['memory_busy_ratios'] or 'none'})"
                      for st in ("quiet1", "hog", "quiet2")), flush=True)
            runs = [(st, r[st]) for r in out[device].values() for st in ("quiet1", "hog", "quiet2")]
            flag = lambda st: sum(x["status"] == "disturbed" for s, x in runs if (s == "hog") == (st == "hog"))  # noqa: E731
            aside = lambda st: sum(x["memory_busy_sessions"] > 0 for s, x in runs if (s == "hog") == (st == "hog"))  # noqa: E731
            n = len(out[device])
            print(f"  {device}: hog runs flagged {flag('hog')} of {n} (sessions set aside in {aside('hog')}); "
                  f"quiet runs flagged {flag('quiet')} of {2 * n} (sessions set aside in {aside('quiet')})", flush=True)
    write_result("farm_contention" + (f"_{args.tag}" if args.tag else ""),
                 {"n": args.n, "seed": args.seed, "devices": args.devices, "hog": "numpy copy of 256 MB, other core",
                  "memory_probe": not args.no_probe,
                  "networks": out}, threads=1)


if __name__ == "__main__":
    main()
