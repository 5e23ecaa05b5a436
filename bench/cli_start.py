"""Figure: how long a command takes to start, and what the lazy imports save.

Every ``nas`` command used to import torch, timm and scikit-learn while building its parser (the
training recipe and the PyTorch model were imported by the package roots), so ``nas --help`` took
seconds. Now ``import search_space`` and the parser load neither; a command loads what it uses.

Each row is a fresh Python process, timed from ``subprocess.run`` start to exit, in interleaved
rounds (every row once per round, so the machine's drift hits all rows alike); the median of
``--rounds``. Baselines measured in the same run: the bare interpreter, and ``import torch, timm,
sklearn`` -- what every start paid before.

Run: ``python bench/cli_start.py [--rounds 7]``; writes ``bench/results/cli_start.json``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, setup, write_result

setup()


def rows(out: Path) -> dict[str, list[str]]:
    """Each row's interpreter arguments; the search writes its run folder under ``out``."""
    return {
        "python -c pass (interpreter, baseline)": ["-c", "pass"],
        "import torch, timm, sklearn (what every start paid before)": ["-c", "import torch, timm, sklearn"],
        "import search_space": ["-c", "import search_space"],
        "nas --help": ["-m", "nas", "--help"],
        "nas space show edgevit_xxs": ["-m", "nas", "space", "show", "edgevit_xxs"],
        "import search_space; search_space.EdgeViT (the model on first use)": ["-c", "import search_space; search_space.EdgeViT"],
        "nas farm devices": ["-m", "nas", "farm", "devices"],
        "nas search --device s21 --budget-ms 30 --trials 8 --no-ray": [
            "-m", "nas", "search", "--device", "s21", "--budget-ms", "30", "--trials", "8", "--no-ray", "--out", str(out)],
    }


def once(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cli_start-"))
    plan = rows(tmp)
    times: dict[str, list[float]] = {k: [] for k in plan}
    for k, a in plan.items():  # warm the file cache once; not counted
        once(a)
    for r in range(args.rounds):
        for k, a in plan.items():
            times[k].append(once(a))
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    print(f"{'process':<70} {'median s':>9} {'min s':>7} {'max s':>7}")
    out = {}
    for k, v in times.items():
        out[k] = {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": v}
        print(f"{k:<70} {out[k]['median_s']:>9.2f} {min(v):>7.2f} {max(v):>7.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_result("cli_start", {"rounds": args.rounds, "rows": out})


if __name__ == "__main__":
    main()
