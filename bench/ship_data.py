"""Write (or check) the public benchmarks' data shipped in ``public_benchmarks/data/``.

Why: a fresh clone or an installed wheel has no ``../shared/data`` folder, so the evaluation data
(HELP latencies, NAS-Bench-Suite-Zero's NAS-Bench-201 slice, ViT-Bench-101, timm's ImageNet
results) ship inside the package. The large files are gzip-compressed with ``mtime=0`` and no file
name, so the same input gives the same bytes; each data set's folder keeps its ``LICENSE`` and a
``PROVENANCE.md`` with the source line of ``shared/data/README.md`` and the sha256 of every
uncompressed original. Values are never edited: the shipped files decompress to the source bytes.

Run from the repository root:

* ``python bench/ship_data.py [--source ../shared/data]``: (re)write the copies and PROVENANCE.md
  files. A ``.gz`` copy whose content is already the source's is left alone (another zlib may
  compress to other bytes; rewriting would only churn git).
* ``python bench/ship_data.py --check [--source DIR]``: compare every shipped file, decompressed,
  with the source and every PROVENANCE.md with what this script writes; exit 1 on any mismatch.
  Without a source folder (the default one absent, e.g. a fresh clone) only the sha256 lines of
  PROVENANCE.md are checked against the shipped files.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from public_benchmarks.data import SHIPPED, check_shipped  # noqa: E402
from search_space.files import atomic_write  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data"
#: no shipped file may come near this (a repository and a wheel should stay small)
MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Item:
    """One source file: its logical path inside the data set's folder, whether it ships gzipped, and
    the row of shared/data/README.md that describes it (copied verbatim; "same" in the source column
    expanded to the repository and commit of the row above)."""

    path: str
    gzip: bool
    what: str
    source: str
    license: str


#: data set folder -> its files. Rows copied from shared/data/README.md (table "Reference data").
DATASETS: dict[str, list[Item]] = {
    "help": [
        Item("nasbench201/latency_ms.csv", True,
             "latency in ms of all 15,625 NAS-Bench-201 cells on 27 device settings (desktop GPUs at batch "
             "1/32/256, Xeon CPUs, Pixel 2, Pixel 3, Galaxy S7, Galaxy A50, Essential Ph-1, Raspberry Pi 4, "
             "Eyeriss ASIC, FPGA). Columns: `index` (NAS-Bench-201 API order), `arch` (NAS-Bench-201 arch "
             "string), one column per device. The pixel3/raspi4/eyeriss/fpga columns are HW-NAS-Bench's "
             "CIFAR-10 values; phone columns pixel2/samsung_*/essential_ph_1 are whole milliseconds",
             "HayeonLee/HELP @45f70eb : data/nasbench201/latency/*.pt, str_arch2idx.pt", "MIT"),
        Item("nasbench201/reference_indices.json", False,
             "the 10 fixed reference architectures HELP measures on a new device to build its hardware embedding",
             "HayeonLee/HELP @45f70eb : hardware_embedding_index.pt", "MIT"),
        *(Item(f"fbnet/{name}", gz,
               "same for 5,000 FBNet-space architectures (22 layers, blocks k{3,5}_e{1,3,6}[_g2] or skip; "
               "`arch` is the block list)", "HayeonLee/HELP @45f70eb : data/fbnet/", "MIT")
          for name, gz in (("latency_ms.csv", True), ("reference_indices.json", False))),
    ],
    "nb201-zero-cost": [
        Item("zc_nasbench201.json", True,
             "NAS-Bench-Suite-Zero slice: 491 NAS-Bench-201 cells per data set (cifar10, cifar100, "
             "ImageNet16-120) with flops, params, 9 zero-cost proxy scores and trained validation accuracy. "
             "Keys are op-index tuples (op order: skip, none, conv3x3, conv1x1, avgpool; edge order 1→2, "
             "1→3, 1→4, 2→3, 2→4, 3→4)",
             "automl/NASLib @9052f54 (branch benchmarks) : naslib/data/zc_nasbench201.json", "Apache-2.0"),
    ],
    "vit-bench-101": [
        Item(f"{name}.json", True,
             "ViT-Bench-101: 100 + 100 AutoFormer-space and 100 PiT-space vision transformers with their "
             "trained top-1 (CIFAR-100, Flowers, Chaoyang; with and without distillation)",
             "lilujunai/Auto-Prox-AAAI24 @90ed458 : gt_results/*.pth (converted to JSON)", "Apache-2.0")
        for name in ("gt_autoformer", "gt_autoformer_2", "gt_pit")
    ],
    "timm-results": [
        Item("results-imagenet.csv", True,
             "timm's published ImageNet-1k validation results of its pretrained models: `model` "
             "(architecture.pretrained-tag), `img_size`, `top1`, `top5`, `param_count` (M), `crop_pct`, "
             "`interpolation`. Several rows per architecture (different weights, resolutions); tags with "
             "in21k/in12k/in22k or ft_ mark extra pre-training",
             "huggingface/pytorch-image-models @aa4b585 : results/results-imagenet.csv",
             "Apache-2.0 (timm-results/LICENSE)"),
    ],
}


def shipped_name(item: Item) -> str:
    return item.path + (".gz" if item.gzip else "")


def compress(raw: bytes) -> bytes:
    """gzip with mtime 0 and no file name: reproducible bytes for the same input and zlib."""
    return gzip.compress(raw, compresslevel=9, mtime=0)


def provenance(folder: str, items: list[Item], source: Path) -> str:
    """The PROVENANCE.md of one data set folder."""
    lines = [f"# {folder}: provenance", "",
             "Copied from the project's shared reference data (`shared/data/README.md`, whose rows are quoted "
             "below); values are never edited. Every file here is a measurement or a result that someone else "
             "obtained; the license of the source is in `LICENSE` beside this file.", "",
             "Written by `python bench/ship_data.py`; `python bench/ship_data.py --check` verifies the copies. "
             "Files marked `.gz` are gzip-compressed (mtime 0); the loaders decompress them "
             "(`public_benchmarks.data`).", "",
             "| file | what | source (repository @ commit : path) | license |", "|---|---|---|---|"]
    for it in items:
        shipped = " (shipped as `.gz`)" if it.gzip else ""
        lines.append(f"| `{it.path}`{shipped} | {it.what} | {it.source} | {it.license} |")
    lines += ["", "sha256 of the uncompressed originals:", "", "```"]
    for it in items:
        lines.append(f"{hashlib.sha256((source / folder / it.path).read_bytes()).hexdigest()}  {it.path}")
    lines += ["```", ""]
    return "\n".join(lines)


def _decompressed(path: Path, gz: bool) -> bytes | None:
    if not path.is_file():
        return None
    raw = path.read_bytes()
    return gzip.decompress(raw) if gz else raw


def write(source: Path, dest: Path) -> None:
    for folder, items in DATASETS.items():
        for it in items:
            raw = (source / folder / it.path).read_bytes()
            out = dest / folder / shipped_name(it)
            if _decompressed(out, it.gzip) == raw:
                status = "unchanged"
            else:
                atomic_write(out, compress(raw) if it.gzip else raw)
                status = "written"
            print(f"{status:9s} {out.relative_to(dest)}  {len(raw):>9,} -> {out.stat().st_size:>9,} bytes")
        for name, text in (("LICENSE", (source / folder / "LICENSE").read_bytes()),
                           ("PROVENANCE.md", provenance(folder, items, source).encode())):
            out = dest / folder / name
            if not out.is_file() or out.read_bytes() != text:
                atomic_write(out, text)
                print(f"{'written':9s} {out.relative_to(dest)}")


def check(source: Path | None, dest: Path) -> list[str]:
    """Mismatches between the shipped copies and ``source`` (or, without a source, their own hashes)."""
    problems = check_shipped()
    for folder, items in DATASETS.items():
        names = [shipped_name(it) for it in items] + ["LICENSE", "PROVENANCE.md"]
        for name in names:
            p = dest / folder / name
            if not p.is_file():
                problems.append(f"{folder}/{name}: missing")
            elif p.stat().st_size > MAX_BYTES:
                problems.append(f"{folder}/{name}: {p.stat().st_size:,} bytes, over {MAX_BYTES:,}")
        if source is None:
            continue
        for it in items:
            if _decompressed(dest / folder / shipped_name(it), it.gzip) != (source / folder / it.path).read_bytes():
                problems.append(f"{folder}/{shipped_name(it)}: content differs from {source / folder / it.path}")
        if _decompressed(dest / folder / "LICENSE", False) != (source / folder / "LICENSE").read_bytes():
            problems.append(f"{folder}/LICENSE: differs from the source's")
        if _decompressed(dest / folder / "PROVENANCE.md", False) != provenance(folder, items, source).encode():
            problems.append(f"{folder}/PROVENANCE.md: not what this script writes (run it without --check)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None,
                    help=f"the shared data folder (default {DEFAULT_SOURCE})")
    ap.add_argument("--check", action="store_true", help="verify the shipped copies instead of writing them")
    args = ap.parse_args()
    source = args.source or DEFAULT_SOURCE
    if not source.is_dir():
        if args.source is not None or not args.check:
            print(f"--source {source}: no such folder", file=sys.stderr)
            return 2
        print(f"no source folder at {source}: checking the shipped files against their PROVENANCE.md hashes only")
        source = None
    if not args.check:
        write(source, SHIPPED)
    problems = check(source, SHIPPED)
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    n = sum(len(items) for items in DATASETS.values())
    print(f"{'check' if args.check else 'write + check'}: {n} data files in {len(DATASETS)} folders, "
          f"{len(problems)} problem(s)" + ("" if source is None else f" (source {source})"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
