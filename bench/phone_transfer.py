"""Table: a new phone's blocks from <= 20 measured ones, leave-one-phone-out over the shipped tables.

For each phone P of the three shipped nn-Meter tables (s21 = Xiaomi Mi 11, pixel4, pixel1), P plays
the new phone: the 20 blocks of :func:`predictors.latency.phone.transfer.choose_blocks` (chosen
from the keys' shapes only, the same for every phone) are "measured" on P (read from its table),
the other two phones are the sources, and every other block of P's table (12,096 of them) is
predicted by each method of :class:`~predictors.latency.phone.transfer.BlockTransfer`. Printed:
share within 10 % (and 5 %), overall and per block type, and Kendall tau overall. Also: each
single source alone with the best method, and how the share moves with the number of chosen
blocks (6, 10, 20, 40). The quota and the ``shared`` method were chosen on these same three folds:
there is no fourth phone to confirm them on.

**A fourth device the method was not chosen on** (``--device host-litert``): LiteRT on this CPU, whose
blocks are measured through the farm (the 20 chosen ones plus the keys ``bench/phone_validation.py``
measures, reused from its store): the three phones are the sources, the 20 chosen blocks the shots,
and every other measured block is predicted. An x86 core under XNNPACK is further from the phones
than they are from each other, so this is the harder test, and the only one not on the folds that
chose the quota and the method.

Run: ``python bench/phone_transfer.py`` (seconds; no measurement); ``--device host-litert`` measures
the missing blocks first (minutes; needs the [tflite] extra). Writes bench/results/phone_transfer.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchlib import setup, write_result

setup()
from predictors.latency.phone import BLOCK_TYPES, block_work, load_table, parse_key  # noqa: E402
from predictors.latency.phone.transfer import (DEFAULT_QUOTA, TRANSFER_METHODS, BlockTransfer,  # noqa: E402
                                               choose_blocks)
from predictors.metrics import regression_metrics  # noqa: E402

PHONES = ("s21", "pixel4", "pixel1")


def evaluate(target: dict[str, float], sources: list[dict[str, float]], chosen: list[str], method: str) -> dict:
    rest = [k for k in sorted(target) if k not in set(chosen)]
    tr = BlockTransfer(method).fit(sources, {k: target[k] for k in chosen})
    pred = tr.predict(sources, rest)
    y = np.array([target[k] for k in rest])
    m = regression_metrics(y, pred)
    per = {}
    types = np.array([k.split("_", 1)[0] for k in rest])
    for t in BLOCK_TYPES:
        idx = types == t
        if idx.any():
            rel = np.abs(pred[idx] / y[idx] - 1)
            per[t] = {"n": int(idx.sum()), "within_10": float(np.mean(rel <= 0.10)), "within_5": float(np.mean(rel <= 0.05))}
    return {"n": len(rest), "within_10": m.within_10, "within_5": m.within_5, "kendall_tau": m.kendall_tau,
            "p99_rel": m.p99_rel, "per_type": per, "params": {k: list(v) for k, v in tr.params_.items()}}


def scaled_quota(total: int) -> dict[str, int]:
    """DEFAULT_QUOTA scaled to ``total`` blocks (at least one per type)."""
    base = sum(DEFAULT_QUOTA.values())
    return {t: max(1, int(round(q * total / base))) for t, q in DEFAULT_QUOTA.items()}


def measured_table(device: str, store: Path, chosen: list[str], keys: list[str]) -> tuple[dict[str, float], dict]:
    """``device``'s block table: the chosen blocks and phone_validation's stratified keys (reused from the store)."""
    from device_farm import MeasurementStore, get_profile
    from device_farm.measure import Farm
    from predictors.latency.phone.device_table import measure_block_table, quota, stratified_keys

    # the keys bench/phone_validation.py measures by default (--per-type 40 --small 12)
    per_type = quota(40, 12)
    want = list(dict.fromkeys(chosen + stratified_keys(keys, per_type, seed=0)))

    def progress(key, m, i, n):
        if i % 25 == 0 or m.status != "ok":
            print(f"  block {i}/{n} {key}: {m.status}", flush=True)

    return measure_block_table(Farm(MeasurementStore(store)), get_profile(device), want, on_result=progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", help="also a measured device as a fourth held-out fold (e.g. host-litert)")
    ap.add_argument("--store", type=Path, default=Path("runs/farm/measurements.sqlite"))
    args = ap.parse_args()
    tables = {p: load_table(p) for p in PHONES}
    keys = sorted(set.intersection(*(set(t) for t in tables.values())))
    macs = {k: block_work(parse_key(k)).macs for k in keys}
    rates = {p: {t: float(np.median([macs[k] / tables[p][k] / 1e6 for k in keys if k.startswith(t + "_")]))
                 for t in BLOCK_TYPES} for p in PHONES}
    print("median rate of each table's blocks, GMAC/s (MACs of predictors.latency.phone.block_work / measured ms):")
    for p in PHONES:
        print(f"  {p:<8} " + "  ".join(f"{t} {v:.1f}" for t, v in rates[p].items()))
    print()
    chosen = choose_blocks(keys)
    print(f"{len(chosen)} chosen blocks (same for every phone): {', '.join(chosen)}\n")
    results: dict = {"chosen": chosen, "quota": DEFAULT_QUOTA, "rates_gmacs": rates, "phones": {}}
    header = f"{'held out':<8} {'method':<12} {'<=10%':>7} {'<=5%':>7} {'tau':>6}  " + " ".join(f"{t[:9]:>9}" for t in BLOCK_TYPES)
    print("within 10 % of the held-out phone's other blocks (per type at right)")
    print(header)
    for p in PHONES:
        sources = [tables[q] for q in PHONES if q != p]
        entry: dict = {"sources": [q for q in PHONES if q != p], "methods": {}}
        for method in TRANSFER_METHODS:
            r = evaluate(tables[p], sources, chosen, method)
            entry["methods"][method] = r
            print(f"{p:<8} {method:<12} {r['within_10']:>7.1%} {r['within_5']:>7.1%} {r['kendall_tau']:>6.3f}  "
                  + " ".join(f"{r['per_type'][t]['within_10']:>9.1%}" for t in BLOCK_TYPES))
        entry["single_source"] = {}
        for q in entry["sources"]:
            r = evaluate(tables[p], [tables[q]], chosen, "shared")
            entry["single_source"][q] = r
            print(f"{p:<8} {'only ' + q:<12} {r['within_10']:>7.1%} {r['within_5']:>7.1%} {r['kendall_tau']:>6.3f}  "
                  + " ".join(f"{r['per_type'][t]['within_10']:>9.1%}" for t in BLOCK_TYPES))
        entry["budget"] = {}
        for total in (6, 12, 20, 40):
            ch = choose_blocks(keys, scaled_quota(total))
            r = evaluate(tables[p], sources, ch, "shared")
            entry["budget"][str(len(ch))] = r["within_10"]
        results["phones"][p] = entry
        print()
    if args.device:
        table, info = measured_table(args.device, args.store, chosen, keys)
        missing = [k for k in chosen if k not in table]
        if missing:
            raise SystemExit(f"{args.device}: chosen blocks failed to measure: {', '.join(missing)}")
        sources = [tables[q] for q in PHONES]
        entry = {"sources": list(PHONES), "n_blocks": len(table), "overhead_ms": info["overhead_ms"],
                 "disturbed": len(info["disturbed"]), "failed": info["failed"], "methods": {}}
        print(f"\n{args.device} as the new device ({len(table)} measured blocks, {len(info['disturbed'])} disturbed; "
              f"sources: the three phones; the method and quota were not chosen on it)")
        print(header)
        for method in TRANSFER_METHODS:
            r = evaluate(table, sources, chosen, method)
            entry["methods"][method] = r
            print(f"{args.device[:8]:<8} {method:<12} {r['within_10']:>7.1%} {r['within_5']:>7.1%} {r['kendall_tau']:>6.3f}  "
                  + " ".join(f"{r['per_type'][t]['within_10'] if t in r['per_type'] else float('nan'):>9.1%}"
                             for t in BLOCK_TYPES))
        results["new_device"] = {args.device: entry}
        print()
    print("shared, share within 10 % by the number of chosen blocks:")
    for p in PHONES:
        print(f"  {p:<8} " + "  ".join(f"{n} blocks: {v:.1%}" for n, v in results["phones"][p]["budget"].items()))
    mean = {m: float(np.mean([results["phones"][p]["methods"][m]["within_10"] for p in PHONES])) for m in TRANSFER_METHODS}
    results["mean_within_10"] = mean
    print("\nmean over held-out phones, within 10 %: " + ", ".join(f"{m} {v:.1%}" for m, v in mean.items()))
    write_result("phone_transfer", results)


if __name__ == "__main__":
    main()
