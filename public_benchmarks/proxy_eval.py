"""How well each zero-cost proxy ranks trained networks, on the two public benchmarks, in one call.

``evaluate("vit-bench-101")`` builds every network of ViT-Bench-101 (:mod:`public_benchmarks.vitbench`;
spaces ``autoformer``, ``autoformer_2``, ``pit``), scores it with every proxy of
:mod:`predictors.accuracy.proxies`, and correlates each proxy (``params`` and ``macs`` included) and the
**default score** (``aggregate(table, proxies.DEFAULT_PROXIES)``, read at call time) with each
accuracy column of each space. ``evaluate("nb201")`` does the same on NAS-Bench-Suite-Zero's 491
NAS-Bench-201 cells (:func:`public_benchmarks.nb201.build_nb201`) against cifar10 / cifar100 /
ImageNet16-120 validation accuracy, and checks our synflow / snip / jacob_cov / grad_norm against
the scores NASLib stored for the same cells (Spearman, ours vs stored). Both data sets ship with the
package (:mod:`public_benchmarks.data`; ``data_dir`` / ``nas proxy eval --data-dir`` or
``$EDGEVIT_NAS_SHARED_DATA`` name another folder with the same layout).

Protocol (the one ``bench/proxies_vitbench.py`` and ``bench/proxies_nb201.py`` used before this
module existed, so the numbers are the same): seeded random Gaussian inputs, seed 0, batch 8, one
torch thread per worker; ViT-Bench-101 networks at 64x64 with 100 classes (they were trained at
224x224: the reduction is part of what is measured), NB201 cells at 32x32 with 10 classes.
Correlations are Kendall tau and Spearman rho (scipy) over the networks whose score is finite; the
default score aggregates over all networks of a group (a NaN proxy value ranks last).

Scoring every network takes minutes (about 4 per ViT-Bench-101 space, 5 for NB201 on 2 cores);
``scores_from`` reuses the raw ``"scores"`` of an earlier result JSON (the layout
:meth:`EvalResult.to_dict` writes, which is the layout of the bench scripts' JSON), so the tables,
and a new default set, are recomputed in seconds.

Cost per network (seconds, one thread): each proxy alone on the same network, model build
excluded; the default row is one :func:`~predictors.accuracy.proxies.score` call over the default set.
ViT-Bench-101 times every proxy while scoring (mean over all networks); NB201 scores all proxies in
one call per cell and times them one by one on the first ``cost_networks`` cells. With
``scores_from`` the costs are measured again on the first ``cost_networks`` networks of each group
(0: the file's costs are kept, and the default's cost is the sum of its proxies' costs).
"""
from __future__ import annotations

import ast
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from predictors.accuracy import proxies as P
from search_space.config import ConfigError

from .data import ENV, DataFileError, data_path, data_root, read_json

__all__ = [
    "BENCHES", "VITBENCH_SPACES", "NB201_DATASETS", "NASLIB_STORED", "SETTINGS", "DataFileError", "ScoresFileError",
    "Correlation", "correlation", "GroupResult", "EvalResult", "evaluate", "check_data",
    "key_to_arch", "load_nb201",
]

BENCHES: tuple[str, ...] = ("vit-bench-101", "nb201")
VITBENCH_SPACES: tuple[str, ...] = ("autoformer", "autoformer_2", "pit")
NB201_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "ImageNet16-120")
#: our proxy -> the name of NASLib's stored score of the same proxy
NASLIB_STORED: dict[str, str] = {"synflow": "synflow", "snip": "snip", "jacob_cov": "jacov", "grad_norm": "grad_norm"}
#: NASLib's stored scores correlated with accuracy for reference
NASLIB_REFERENCE: tuple[str, ...] = ("synflow", "snip", "jacov", "grad_norm", "params", "flops")
#: NASLib op index -> public_benchmarks.nb201 op name (op order of data/nb201-zero-cost/PROVENANCE.md)
NASLIB_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
#: arch-string edge k comes from NASLib edge NASLIB_EDGE_OF[k] (1->2, 1->3, 2->3, 1->4, 2->4, 3->4)
NASLIB_EDGE_OF: tuple[int, ...] = (0, 1, 3, 2, 4, 5)
NB201_SOURCE = ("shared/data/nb201-zero-cost/zc_nasbench201.json "
                "(automl/NASLib @9052f54 naslib/data/zc_nasbench201.json)")  # the "source" of the result JSON
#: per benchmark: input side, batch and classes of the protocol (module docstring)
SETTINGS: dict[str, dict[str, int]] = {
    "vit-bench-101": {"img_size": 64, "batch_size": 8, "num_classes": 100},
    "nb201": {"img_size": 32, "batch_size": 8, "num_classes": 10},
}
#: per benchmark: the logical path (:mod:`public_benchmarks.data`) of the file that must be there
_DATA_FILES: dict[str, tuple[str, str]] = {"vit-bench-101": ("vit-bench-101", "gt_autoformer.json"),
                                           "nb201": ("nb201-zero-cost", "zc_nasbench201.json")}

Progress = Callable[[str, int, int], None]


class ScoresFileError(ValueError):
    """A ``scores_from`` file that does not fit the request (another benchmark, other settings, missing proxies)."""


# ----------------------------------------------------------------------------------------------- data


def check_data(bench: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The benchmark's data file (``data_dir``: a folder with the layout of the shipped data; default
    ``$EDGEVIT_NAS_SHARED_DATA``, else the shipped copy), or one :class:`DataFileError` line naming
    the path expected and how to point at another folder."""
    _check_bench(bench)
    try:
        return data_path(*_DATA_FILES[bench], root=data_dir)
    except DataFileError:
        expected = data_root(data_dir).joinpath(*_DATA_FILES[bench])
        raise DataFileError(f"{bench} data not found: expected {expected} (or {expected.name}.gz); "
                            f"set ${ENV} (or --data-dir) to a folder that holds {_DATA_FILES[bench][0]}/, "
                            "or unset both to use the data shipped with the package") from None


def key_to_arch(key: str) -> str:
    """NASLib key ``"(i0, ..., i5)"`` (op index per NASLib edge) -> NAS-Bench-201 arch string."""
    from .nb201 import format_nb201

    idx = ast.literal_eval(key)
    return format_nb201([NASLIB_OPS[idx[e]] for e in NASLIB_EDGE_OF])


def load_nb201(data_dir: str | os.PathLike | None = None) -> dict:
    """``{data set: {key: {"val_accuracy", NASLib's stored scores...}}}`` of the 491 cells."""
    check_data("nb201", data_dir)
    return read_json(*_DATA_FILES["nb201"], root=data_dir)["nasbench201"]


def evaluated_proxies(proxies: Sequence[str] | None) -> tuple[str, ...]:
    """The proxies an evaluation scores: those asked for (``None``: all), always with #params and the
    default set beside them (the baselines every figure is read against), in ``ALL_PROXIES`` order."""
    wanted = set(P.ALL_PROXIES if proxies is None else proxies) | {"params"} | set(P.DEFAULT_PROXIES)
    unknown = sorted(wanted - set(P.PROXIES))
    if unknown:
        raise ConfigError("proxies", unknown[0], "allowed: " + ", ".join(P.ALL_PROXIES))
    return tuple(n for n in P.ALL_PROXIES if n in wanted)


def _check_bench(bench: str) -> None:
    if bench not in BENCHES:
        raise ConfigError("--bench", bench, "allowed: " + ", ".join(BENCHES))


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Correlation:
    """Kendall tau and Spearman rho over the ``n`` networks with a finite score."""

    kendall: float
    spearman: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"kendall": self.kendall, "spearman": self.spearman, "n": self.n}


def correlation(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Kendall tau and Spearman rho of ``x`` against ``y`` over the pairs where both are finite."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return Correlation(float("nan"), float("nan"), int(ok.sum()))
    with warnings.catch_warnings():  # a constant column gives nan, which the table shows
        warnings.simplefilter("ignore")
        return Correlation(float(kendalltau(x[ok], y[ok])[0]), float(spearmanr(x[ok], y[ok])[0]), int(ok.sum()))


@dataclass
class GroupResult:
    """One set of networks with its targets: a ViT-Bench-101 space, or the NB201 cells.

    ``correlations[row][target]`` for every proxy and the default row; ``seconds_per_network[row]``
    the cost of a row per network; ``scores[key][proxy]`` the raw scores and ``accuracy[key][target]``
    the trained accuracies (keys: a ViT-Bench-101 record index, or a NASLib cell key, as strings).
    """

    name: str
    targets: tuple[str, ...]
    correlations: dict[str, dict[str, Correlation]]
    seconds_per_network: dict[str, float]
    cost_source: str
    nan_count: dict[str, int]
    scores: dict[str, dict[str, float]]
    accuracy: dict[str, dict[str, float]]
    network_seconds: dict[str, float] = field(default_factory=dict)  # all proxies of one network
    wall_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.scores)


@dataclass
class EvalResult:
    """What :func:`evaluate` returns; :meth:`to_dict` is the bench scripts' JSON layout."""

    bench: str
    img_size: int
    batch_size: int
    num_classes: int
    seed: int
    workers: int
    proxies: tuple[str, ...]
    default_proxies: tuple[str, ...]
    groups: dict[str, GroupResult]
    #: NB201 only: Spearman rho of our score against NASLib's stored score of the same name, per data set
    stored_check: dict[str, dict[str, float]] = field(default_factory=dict)
    #: NB201 only: NASLib's stored scores against validation accuracy (their protocol), for reference
    naslib_reference: dict[str, dict[str, Correlation]] = field(default_factory=dict)
    scores_from: str | None = None
    scored: dict[str, Any] = field(default_factory=dict)  # date and machine of the scoring run
    date: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def default_name(self) -> str:
        return f"default ({'+'.join(self.default_proxies)})"

    @property
    def rows(self) -> tuple[str, ...]:
        return (*self.proxies, self.default_name)

    def beats_params(self) -> dict[str, dict[str, bool]]:
        """Per group and target: is the default score's Kendall tau above #params'?"""
        return {g.name: {t: g.correlations[self.default_name][t].kendall > g.correlations["params"][t].kendall
                         for t in g.targets} for g in self.groups.values()}

    # --- JSON -------------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"bench": self.bench, "date": self.date, "machine": self.machine, "default_proxies": list(self.default_proxies),
                "default_name": self.default_name, "proxies": list(self.proxies), "scores_from": self.scores_from,
                "scored": self.scored}

    def to_dict(self) -> dict[str, Any]:
        """The layout of ``bench/results/proxies_{vitbench,nb201}.json`` (older readers keep working),
        with the default row under ``"default"`` (and, for NB201, also ``"DEFAULT(<set>)"``)."""
        d = self.default_name
        if self.bench == "vit-bench-101":
            results = {}
            for g in self.groups.values():
                results[g.name] = {
                    "n": g.n, "columns": list(g.targets),
                    "correlations": {t: {("default" if r == d else r): g.correlations[r][t].to_dict() for r in self.rows}
                                     for t in g.targets},
                    "scores": g.scores, "accuracy": g.accuracy,
                    "seconds_per_network": _cost_dict(g.seconds_per_network, self.proxies, self.default_proxies, d),
                    "cost_source": g.cost_source,
                    "nan_count": {("default" if r == d else r): c for r, c in g.nan_count.items()},
                    "wall_s": g.wall_s}
            return {**self._common(), "img_size": self.img_size, "batch_size": self.batch_size,
                    "num_classes": self.num_classes, "seed": self.seed, "workers": self.workers, "results": results}
        g = self.groups["nb201"]
        legacy = "DEFAULT(" + "+".join(self.default_proxies) + ")"
        corr = {r: {t: g.correlations[r][t].to_dict() for t in g.targets} for r in self.proxies}
        corr[legacy] = corr["default"] = {t: g.correlations[d][t].to_dict() for t in g.targets}
        cost = _cost_dict(g.seconds_per_network, self.proxies, self.default_proxies, d)
        return {
            **self._common(), "source": NB201_SOURCE,
            "protocol": {"cells": g.n, "input": [3, self.img_size, self.img_size], "num_classes": self.num_classes,
                         "batch": self.batch_size, "seed": self.seed, "workers": self.workers, "torch_threads": 1,
                         "wall_s": g.wall_s},
            "correlation_vs_val_accuracy": corr,
            "naslib_stored_vs_val_accuracy": {n: {t: c.to_dict() for t, c in r.items()}
                                              for n, r in self.naslib_reference.items()},
            "spearman_ours_vs_naslib_stored": self.stored_check,
            "nan_count": {r: g.nan_count[r] for r in self.proxies},
            "cost_per_net_nb201_s": cost, "cost_source": g.cost_source,
            "scores": g.scores, "seconds_per_cell": g.network_seconds,
        }

    # --- markdown ---------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """One table per group (Kendall tau, Spearman in brackets, cost per network), the default row in bold."""
        out = []
        wins = self.beats_params()
        for g in self.groups.values():
            out.append(f"**{g.name}**: {g.n} networks, proxies at {self.img_size}x{self.img_size}, batch "
                       f"{self.batch_size}, seed {self.seed}; Kendall tau (Spearman rho) against trained top-1; "
                       f"s/net: {g.cost_source}\n")
            out.append("| proxy | " + " | ".join(g.targets) + " | s/net | nan |")
            out.append("|---|" + "---:|" * (len(g.targets) + 2))
            for r in self.rows:
                cells = [f"{g.correlations[r][t].kendall:+.3f} ({g.correlations[r][t].spearman:+.3f})" for t in g.targets]
                row = [r, *cells, f"{g.seconds_per_network[r]:.3f}", str(g.nan_count[r])]
                if r == self.default_name:
                    row = [f"**{c}**" for c in row]
                out.append("| " + " | ".join(row) + " |")
            out.append("\n" + _beats_line(self.default_name, g, wins[g.name]) + "\n")
        if self.stored_check:
            out.append("Spearman rho of our score against NASLib's stored score of the same name:\n")
            out.append("| proxy | " + " | ".join(NB201_DATASETS) + " |")
            out.append("|---|" + "---:|" * len(NB201_DATASETS))
            for n, r in self.stored_check.items():
                out.append(f"| {n} | " + " | ".join(f"{r[t]:.3f}" for t in NB201_DATASETS) + " |")
            out.append("")
        return "\n".join(out)


def _cost_dict(seconds: Mapping[str, float], names: Sequence[str], default: Sequence[str],
               default_name: str) -> dict[str, float]:
    """Per proxy, plus the default under ``"<a>+<b>"`` (what a later ``scores_from`` reads) and ``"default"``."""
    out = {n: seconds[n] for n in names}
    out["+".join(default)] = out["default"] = seconds[default_name]
    return out


def _beats_line(default_name: str, g: GroupResult, wins: Mapping[str, bool]) -> str:
    parts = []
    for t in g.targets:
        diff = g.correlations[default_name][t].kendall - g.correlations["params"][t].kendall
        parts.append(f"{t} {'yes' if wins[t] else 'no'} ({diff:+.3f})")
    return f"{default_name} beats #params (Kendall tau): " + ", ".join(parts)


# ------------------------------------------------------------------------------------------ scoring


def _init_worker() -> None:
    torch.set_num_threads(1)


def _score_vit(task: tuple) -> tuple[str, dict[str, float], dict[str, float]]:
    """Build one ViT-Bench-101 network and time each proxy alone on it."""
    from .vitbench import build_vitbench

    space, key, arch, names, img, batch, classes, seed = task
    torch.manual_seed(seed)
    model = build_vitbench(space, arch, num_classes=classes, img_size=img)
    row, secs = {}, {}
    for n in names:
        t0 = time.perf_counter()
        row.update(P.score(model, (3, img, img), names=[n], batch_size=batch, num_classes=classes, seed=seed))
        secs[n] = time.perf_counter() - t0
    return key, row, secs


def _score_nb201(task: tuple) -> tuple[str, dict[str, float], dict[str, float]]:
    """Build one NB201 cell and score every proxy in one call (shared gradient pass)."""
    from .nb201 import build_nb201

    key, names, img, batch, classes, seed = task
    torch.manual_seed(seed)
    net = build_nb201(key_to_arch(key), num_classes=classes)
    t0 = time.perf_counter()
    row = P.score(net, (3, img, img), names, batch_size=batch, num_classes=classes, seed=seed)
    return key, row, {"all": time.perf_counter() - t0}


def _run(fn, tasks: list, workers: int, progress: Progress | None, group: str) -> list:
    out = []
    if workers <= 1:
        for i, t in enumerate(tasks):
            out.append(fn(t))
            if progress:
                progress(group, i + 1, len(tasks))
        return out
    with get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        for r in pool.imap(fn, tasks, chunksize=1):
            out.append(r)
            if progress:
                progress(group, len(out), len(tasks))
    return out


def _measure_cost(build: Callable[[], torch.nn.Module], names: Sequence[str], default: Sequence[str],
                  img: int, batch: int, classes: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = build()
    return P.proxy_cost(model, (3, img, img), names, batch_size=batch, num_classes=classes, seed=seed,
                        combined=default)


def _costs(builders: list[Callable[[], torch.nn.Module]], names: Sequence[str], default: Sequence[str],
           img: int, batch: int, classes: int, seed: int) -> dict[str, float]:
    """Mean seconds per network of each proxy in ``names`` alone and of one call over ``default``
    (key ``"+".join(default)``), over the networks ``builders`` make."""
    total: dict[str, float] = {}
    for b in builders:
        for k, v in _measure_cost(b, names, default, img, batch, classes, seed).items():
            total[k] = total.get(k, 0.0) + v / len(builders)
    return total


# ------------------------------------------------------------------------------------------ evaluate


def _load_scores_file(path: str | os.PathLike, bench: str) -> dict[str, Any]:
    with open(path) as f:
        d = json.load(f)
    layout = "vit-bench-101" if "results" in d else "nb201" if "protocol" in d and "scores" in d else None
    if layout != bench:
        raise ScoresFileError(f"{path}: not a {bench} result JSON (expected the layout of "
                         f"bench/results/{'proxies_vitbench' if bench == 'vit-bench-101' else 'proxies_nb201'}.json)")
    return d


def _setting(name: str, given: int | None, stored: int | None, default: int) -> int:
    if stored is None:
        return default if given is None else int(given)
    if given is not None and int(given) != int(stored):
        raise ScoresFileError(f"{name}={given} differs from the scores file's {stored}; drop it or rescore")
    return int(stored)


def evaluate(bench: str, limit: int = 0, img_size: int | None = None, batch_size: int | None = None,
             workers: int = 1, scores_from: str | os.PathLike | None = None, progress: Progress | None = None,
             proxies: Iterable[str] | None = None, cost_networks: int = 10, seed: int = 0,
             data_dir: str | os.PathLike | None = None) -> EvalResult:
    """Correlate every proxy and the default score with trained accuracy on ``bench``.

    ``bench``: ``"vit-bench-101"`` or ``"nb201"``. ``limit``: networks per group (0: all; the first
    ``limit`` in file order, NB201 keys sorted). ``img_size`` / ``batch_size``: the protocol's
    (:data:`SETTINGS`) unless given; with ``scores_from`` they are the file's. ``workers``: scoring
    processes (one torch thread each). ``proxies``: the proxies to score (default all; ``params``
    and the default set are always added). ``progress(group, done, total)`` is called per network.
    ``data_dir``: the shared data folder (holds ``vit-bench-101/`` and ``nb201-zero-cost/``).
    """
    _check_bench(bench)
    check_data(bench, data_dir)
    default = tuple(P.DEFAULT_PROXIES)
    names = evaluated_proxies(proxies)
    prev = _load_scores_file(scores_from, bench) if scores_from else None
    if prev is not None:
        if bench == "vit-bench-101":
            stored_img, stored_batch = prev.get("img_size"), prev.get("batch_size")
        else:
            stored_img, stored_batch = prev["protocol"]["input"][1], prev["protocol"]["batch"]
    else:
        stored_img = stored_batch = None
    img = _setting("img_size", img_size, stored_img, SETTINGS[bench]["img_size"])
    batch = _setting("batch_size", batch_size, stored_batch, SETTINGS[bench]["batch_size"])
    classes = SETTINGS[bench]["num_classes"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if bench == "vit-bench-101":
            groups = {s: _eval_vit(s, limit, names, default, img, batch, classes, seed, workers, prev,
                                   progress, cost_networks, data_dir) for s in VITBENCH_SPACES}
            extra: dict[str, Any] = {}
        else:
            g, extra = _eval_nb201(limit, names, default, img, batch, classes, seed, workers, prev, progress,
                                   cost_networks, data_dir)
            groups = {"nb201": g}
    finally:
        torch.set_num_threads(threads)
    if prev is not None:
        workers = int(prev.get("workers", prev.get("protocol", {}).get("workers", workers)))
    return EvalResult(
        bench=bench, img_size=img, batch_size=batch, num_classes=classes, seed=seed, workers=workers,
        proxies=names, default_proxies=default, groups=groups, scores_from=str(scores_from) if scores_from else None,
        scored=_scored(prev),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=_machine(), **extra)


def _scored(prev: Mapping[str, Any] | None) -> dict[str, Any]:
    """When and where the scores of ``prev`` were computed (kept through any number of recomputations)."""
    if prev is None:
        return {}
    return dict(prev.get("scored") or {"date": prev.get("date"), "machine": prev.get("machine")})


def _machine() -> dict[str, Any]:
    from device_farm.measure import cpu_model

    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": 1}


def _group(name: str, targets: Sequence[str], table: dict[str, dict[str, float]], acc: dict[str, dict[str, float]],
           names: Sequence[str], default: Sequence[str], seconds: dict[str, float], cost_source: str,
           network_seconds: dict[str, float], wall: float) -> GroupResult:
    """Correlations of every proxy and the default with every target (NaN scores left out per proxy)."""
    missing = sorted({n for n in names if any(n not in row for row in table.values())})
    if missing:
        raise ScoresFileError(f"{name}: the scores lack {', '.join(missing)}; rescore without scores_from")
    default_name = f"default ({'+'.join(default)})"
    agg = P.aggregate(table, default)
    keys = list(table)
    corr: dict[str, dict[str, Correlation]] = {}
    for r in (*names, default_name):
        vals = {k: agg[k] if r == default_name else table[k][r] for k in keys}
        corr[r] = {}
        for t in targets:
            ks = [k for k in keys if t in acc[k]]
            corr[r][t] = correlation([vals[k] for k in ks], [acc[k][t] for k in ks])
    nan_count = {n: int(sum(not math.isfinite(table[k][n]) for k in keys)) for n in names}
    nan_count[default_name] = 0
    secs = {n: float(seconds[n]) for n in names}
    combined = "+".join(default)
    if combined in seconds:
        secs[default_name] = float(seconds[combined])
    else:
        secs[default_name] = float(sum(seconds[n] for n in default))
        cost_source += "; default: sum of its proxies' costs"
    return GroupResult(name=name, targets=tuple(targets), correlations=corr, seconds_per_network=secs,
                       cost_source=cost_source, nan_count=nan_count, scores=table, accuracy=acc,
                       network_seconds=network_seconds, wall_s=wall)


def _eval_vit(space: str, limit: int, names, default, img, batch, classes, seed, workers, prev, progress,
              cost_networks, data_dir) -> GroupResult:
    from .vitbench import build_vitbench, load_vitbench

    records = load_vitbench(space, data_dir)
    if limit:
        records = records[:limit]
    t0 = time.perf_counter()
    if prev is not None:
        stored = prev["results"].get(space, {})
        table = {str(r.index): stored["scores"][str(r.index)] for r in records if str(r.index) in stored.get("scores", {})}
        records = [r for r in records if str(r.index) in table]
        seconds = dict(stored.get("seconds_per_network", {}))
        source = "from the scores file" + (f" ({stored['cost_source']})" if stored.get("cost_source") else "")
        wall = float(stored.get("wall_s", 0.0))
    else:
        tasks = [(space, str(r.index), r.arch, names, img, batch, classes, seed) for r in records]
        table, seconds = {}, {n: 0.0 for n in names}
        for key, row, secs in _run(_score_vit, tasks, workers, progress, space):
            table[key] = row
            for n in names:
                seconds[n] += secs[n] / len(tasks)
        source = f"each proxy alone, mean over the {len(records)} networks"
        wall = time.perf_counter() - t0
    k = min(cost_networks, len(records))
    if k:
        builders = [lambda r=r: build_vitbench(space, r, num_classes=classes, img_size=img) for r in records[:k]]
        measured = _costs(builders, names if prev is not None else (), default, img, batch, classes, seed)
        seconds.update(measured)
        if prev is not None:
            source = f"each proxy alone, re-measured on the first {k} networks"
        source += f"; default: one score() call, mean over the first {k} networks"
    targets = sorted({t for r in records for t in r.acc})
    return _group(space, targets, table, {str(r.index): dict(r.acc) for r in records}, names, default, seconds,
                  source, {}, wall)


def _eval_nb201(limit, names, default, img, batch, classes, seed, workers, prev, progress, cost_networks,
                data_dir) -> tuple[GroupResult, dict[str, Any]]:
    from .nb201 import build_nb201

    data = load_nb201(data_dir)
    keys = sorted(data["cifar10"])
    if limit:
        keys = keys[:limit]
    t0 = time.perf_counter()
    if prev is not None:
        table = {k: prev["scores"][k] for k in keys if k in prev["scores"]}
        keys = [k for k in keys if k in table]
        network_seconds = {k: v for k, v in prev.get("seconds_per_cell", {}).items() if k in table}
        seconds = {n: v for n, v in prev.get("cost_per_net_nb201_s", {}).items()}
        source = "from the scores file" + (f" ({prev['cost_source']})" if prev.get("cost_source") else "")
        wall = float(prev["protocol"].get("wall_s", 0.0))
    else:
        tasks = [(k, names, img, batch, classes, seed) for k in keys]
        table, network_seconds = {}, {}
        for key, row, secs in _run(_score_nb201, tasks, workers, progress, "nb201"):
            table[key], network_seconds[key] = row, secs["all"]
        wall = time.perf_counter() - t0
        seconds, source = {}, ""
    k = min(cost_networks, len(keys))
    if k:
        builders = [lambda key=key: build_nb201(key_to_arch(key), num_classes=classes) for key in keys[:k]]
        seconds.update(_costs(builders, names, default, img, batch, classes, seed))
        source = f"each proxy alone and the default in one score() call, mean over the first {k} cells"
    elif prev is None:
        seconds, source = {n: float("nan") for n in names}, "not measured (cost_networks=0)"
    acc = {key: {ds: float(data[ds][key]["val_accuracy"]) for ds in NB201_DATASETS} for key in keys}
    g = _group("nb201", NB201_DATASETS, table, acc, names, default, seconds, source, network_seconds, wall)
    stored = {ours: {ds: correlation([table[k][ours] for k in keys], [data[ds][k][theirs] for k in keys]).spearman
                     for ds in NB201_DATASETS} for ours, theirs in NASLIB_STORED.items() if ours in names}
    ref = {theirs: {ds: correlation([data[ds][k][theirs] for k in keys], [data[ds][k]["val_accuracy"] for k in keys])
                    for ds in NB201_DATASETS} for theirs in NASLIB_REFERENCE}
    return g, {"stored_check": stored, "naslib_reference": ref}
