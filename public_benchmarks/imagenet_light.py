"""Real ImageNet-1k as the yardstick: light networks timm builds, their published top-1, and how well
each accuracy score ranks them.

Why: the proxies were chosen on CIFAR-scale benchmarks (ViT-Bench-101, NAS-Bench-201); the search
claims ImageNet-1k accuracy. timm publishes the ImageNet-1k validation top-1 of its pretrained
weights (``public_benchmarks/data/timm-results/results-imagenet.csv``), and builds every one of
those architectures with random weights, so each can be scored exactly as an EdgeViT candidate is.

**Selection rule** (:func:`select_rows`; fixed before any correlation was computed):

1. the architecture belongs to a family of light networks listed in :data:`FAMILIES` (mobile
   CNNs, NAS-found CNNs, light vision transformers and hybrids) and timm can build it;
2. the weights saw ImageNet-1k only: the pretrained tag ends in ``in1k`` and names no extra data
   or pre-training (:data:`EXTRA_DATA`: in21k, in22k, in12k, ``ft_``, JFT, SSLD, Instagram, ...);
3. at most :data:`MAX_PARAMS_M` million parameters as published (EdgeViT-S has 13.1 M; the bound
   leaves room for the larger candidates of the default search space);
4. the row's resolution is the tag's own input size (timm's pretrained config), not a
   test-time-resolution row of weights trained smaller;
5. distilled weights (a tag containing ``dist``) are kept but flagged: their top-1 owes part of
   itself to a teacher. Correlations are reported without them (**main**) and with them
   (**with distilled**, a sensitivity check); the accuracy prior never trains on them;
6. one row per architecture and resolution: the TF ports (``tf_``), torchvision variants (``_tv``)
   and resolution-suffixed names (``_224``, ``_384``) of one architecture count as one; among their rows the
   highest top-1 (the best published ImageNet-1k-only result for it);
7. EdgeViT-XXS/XS/S with the paper's top-1 (74.4 / 77.5 / 81.0; Pan et al. 2022, Table 1; the
   project's ``predictors.accuracy.ANCHORS``) as the family ``edgevit``.

The counted table (parameters, MACs at the row's resolution, depth) is written once by
``bench/imagenet_light_table.py`` into ``predictors/accuracy/data/imagenet_light.json``; the
accuracy prior trains on it and :func:`evaluate` reads its models from it.

**Evaluation protocol** (:func:`evaluate`): one row per architecture (its smallest published
resolution); every network built with random weights (``torch.manual_seed(0)``), scored by
:func:`predictors.accuracy.proxies.score` at 128x128, batch 8, seed 0, 1000 classes (the settings
the project uses for EdgeViT at 224); rows of the table: every proxy, the proxy aggregate
``params+zico+dss`` (``--proxies default``), MACs at the published resolution, and the accuracy
prior's leave-one-family-out prediction (held out: each family predicted by a prior fitted without
it; distilled networks, never in its fit, by the full prior). A network that cannot run at 128 px
(attention biases sized for one resolution) is scored at its published resolution instead, and the
side is recorded; a proxy that fails on a network is NaN for it (left out of that row). Kendall tau-b and Spearman rho over
all networks; Kendall over the pairs of networks of one family (**within**) and of different
families (**across**), ties left out; 95% intervals from a bootstrap over *families* (1000
resamples, seed 0, percentile), since variants of one family are not independent; the same
resamples for every row, so the interval of "row minus #params" is paired.
"""
from __future__ import annotations

import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .data import read_csv_rows

__all__ = ["FAMILIES", "EXTRA_DATA", "MAX_PARAMS_M", "PROXY_SIDE", "BATCH", "SEED", "CLASSES", "EDGEVIT_SOURCE",
           "PublishedRow", "select_rows", "edgevit_rows", "arch_key", "family_of", "one_per_arch", "build_network",
           "count_network", "RankStats", "rank_stats", "LightResult", "evaluate", "ScoresFileError"]

#: family -> regular expression over timm architecture names (the whole name must match).
FAMILIES: dict[str, str] = {
    "mobilenetv1": r"mobilenetv1_\d+h?",
    "mobilenetv2": r"mobilenetv2_\w+",
    "mobilenetv3": r"(tf_)?mobilenetv3_(large|small|rw)\w*",
    "mobilenetv4": r"mobilenetv4_\w+",
    "mobilenet_edgetpu": r"mobilenet_edgetpu_\w+",
    "mobilevit": r"mobilevit_(xxs|xs|s)",
    "mobilevitv2": r"mobilevitv2_\d+",
    "efficientvit_m": r"efficientvit_m\d",
    "efficientvit_b": r"efficientvit_b\d",
    "fastvit": r"fastvit_\w+",
    "edgenext": r"edgenext_\w+",
    "repvit": r"repvit_\w+",
    "efficientformer": r"efficientformer_l\d",
    "efficientformerv2": r"efficientformerv2_\w+",
    "swiftformer": r"swiftformer_\w+",
    "levit": r"levit_\d+s?",
    "tinynet": r"tinynet_[a-e]",
    "lcnet": r"lcnet_\d+",
    "ghostnet": r"ghostnet(v2|v3)?_\d+",
    "repghostnet": r"repghostnet_\d+",
    "mnasnet": r"(se)?mnasnet_\w+",
    "efficientnet": r"(tf_)?efficientnet_(b[0-3]|lite[0-4]|e[sml])",
    "efficientnetv2": r"(tf_)?efficientnetv2_(b[0-3]|rw_t)",
    "mixnet": r"(tf_)?mixnet_(s|m|l|xl)",
    "fbnet": r"fbnet(c_100|v3_[bdg])",
    "spnasnet": r"spnasnet_100",
    "hardcorenas": r"hardcorenas_[a-f]",
    "rexnet": r"rexnet_\d+",
    "mobileone": r"mobileone_s\d",
    "starnet": r"starnet_s\d",
    "shvit": r"shvit_s\d",
    "regnet": r"regnet[xy]_0\d\d(_tv)?",
    "deit": r"deit_tiny_patch16_224",
    "pit": r"pit_(ti|xs)_224",
    "xcit": r"xcit_(nano|tiny)_\d+_p\d+_\d+",
    "tiny_vit": r"tiny_vit_\d+m_224",
    "pvt_v2": r"pvt_v2_b\d",
    "coat": r"coat_(lite_)?(tiny|mini)",
    "convit": r"convit_tiny",
}
#: Tag fragments that mark data beyond ImageNet-1k (pre-training, extra images, label distillation with extra data).
EXTRA_DATA: tuple[str, ...] = ("in21k", "in22k", "in12k", "ft_", "jft", "ns_", "ssld", "swsl", "ssl", "yfcc", "ig1b",
                               "m38m", "mim", "laion", "openai")
MAX_PARAMS_M = 20.0
PROXY_SIDE, BATCH, SEED, CLASSES = 128, 8, 0, 1000
N_BOOT = 1000
EDGEVIT_SOURCE = "Pan et al., EdgeViTs, ECCV 2022, Table 1 (ImageNet-1k top-1, 224x224, 300 epochs)"

Progress = Callable[[str, int, int], None]


class ScoresFileError(ValueError):
    """A ``scores_from`` file that is not an imagenet-light result or was scored with other settings."""


# ---------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class PublishedRow:
    """One published result: timm ``model`` = ``arch.tag``, its family and architecture key."""

    model: str
    arch: str
    tag: str
    key: str
    family: str
    img_size: int
    top1: float
    param_count_m: float | None
    distilled: bool


def arch_key(arch: str) -> str:
    """One key per architecture: TF ports, torchvision variants and resolution suffixes folded."""
    k = re.sub(r"^tf_", "", arch)
    k = re.sub(r"_tv$", "", k)
    return re.sub(r"_(224|384)$", "", k)  # resolution suffixes only: _050, _100, _002 are widths


def family_of(arch: str) -> str | None:
    for fam, pat in FAMILIES.items():
        if re.fullmatch(pat, arch):
            return fam
    return None


def _extra_data(tag: str) -> bool:
    return not tag.endswith("in1k") or any(m in tag for m in EXTRA_DATA)


def select_rows(data_dir: str | os.PathLike | None = None) -> tuple[list[PublishedRow], list[tuple[str, str]]]:
    """The published rows the rule keeps (module docstring, rules 1-6), and ``(model, why)`` for every
    row of a listed family it drops. Needs timm (its pretrained configs), not its weights."""
    from timm.models import get_pretrained_cfg

    kept: dict[tuple[str, int], PublishedRow] = {}
    dropped: list[tuple[str, str]] = []
    for r in read_csv_rows("timm-results", "results-imagenet.csv", root=data_dir):
        model = r["model"]
        arch, _, tag = model.partition(".")
        fam = family_of(arch)
        if fam is None:
            continue
        pc = float(r["param_count"].replace(",", ""))
        if _extra_data(tag):
            dropped.append((model, "weights saw more than ImageNet-1k"))
            continue
        if pc > MAX_PARAMS_M:
            dropped.append((model, f"{pc:g} M parameters > {MAX_PARAMS_M:g} M"))
            continue
        cfg = get_pretrained_cfg(model)
        if cfg is None:
            dropped.append((model, "timm has no pretrained config for this tag"))
            continue
        side = int(r["img_size"])
        if side != int(cfg.input_size[-1]):
            dropped.append((model, f"test-time resolution {side} (the weights' own is {cfg.input_size[-1]})"))
            continue
        row = PublishedRow(model, arch, tag, arch_key(arch), fam, side, float(r["top1"]), pc,
                           bool(re.search(r"dist", tag)))
        k = (row.key, side)
        old = kept.get(k)
        # a non-distilled result always beats a distilled one; then the higher top-1, then the name
        rank = (not row.distilled, row.top1, row.model)
        if old is None or rank > (not old.distilled, old.top1, old.model):
            if old is not None:
                dropped.append((old.model, f"same architecture and resolution as {row.model}"))
            kept[k] = row
        else:
            dropped.append((model, f"same architecture and resolution as {old.model}"))
    rows = sorted(kept.values(), key=lambda x: (x.family, x.key, x.img_size))
    return rows, dropped


def edgevit_rows() -> list[PublishedRow]:
    """The paper's three EdgeViTs (rule 7), from the project's anchors."""
    from predictors.accuracy.results import ANCHORS
    from search_space import PRESETS

    names = {PRESETS[n].arch_id: n for n in PRESETS}
    return [PublishedRow(names[a.arch_id], names[a.arch_id], "paper", names[a.arch_id], "edgevit", a.resolution,
                         float(a.top1), None, False) for a in ANCHORS]


def one_per_arch(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per architecture key, the row at its smallest resolution (the table's order is kept)."""
    best: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        if r["key"] not in best or r["img_size"] < best[r["key"]]["img_size"]:
            best[r["key"]] = r
    return list(best.values())


# ------------------------------------------------------------------------------ build and count
def build_network(arch: str, side: int):
    """The network with random weights, built to run at ``side`` (timm's ``img_size`` where the
    architecture takes one; an EdgeViT preset by name). The caller seeds torch."""
    import timm

    from search_space import PRESETS, build_model

    if arch in PRESETS:
        return build_model(PRESETS[arch])
    try:  # 1000 classes always: some default configurations (TinyViT) carry an ImageNet-22k head
        return timm.create_model(arch, pretrained=False, num_classes=CLASSES, img_size=side)
    except TypeError:
        return timm.create_model(arch, pretrained=False, num_classes=CLASSES)


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int
    depth: int


def count_network(model, side: int) -> Counts:
    """Parameters; MACs of one image at ``side`` (FLOPs / 2 by torch's ``FlopCounterMode``, eval mode,
    attention unfused, as ``predictors.accuracy.proxies`` counts them); weighted layers executed."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval().requires_grad_(False)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    calls = [0]
    hooks = [m.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
             for m in model.modules() if isinstance(m, _weighted_types())]
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    finally:
        for h in hooks:
            h.remove()
    return Counts(int(sum(p.numel() for p in model.parameters())), int(fc.get_total_flops() // 2), int(calls[0]))


def _weighted_types() -> tuple[type, ...]:
    """Weighted layers, the depth count: the module counterparts of ``predictors.accuracy.prior.WEIGHTED_KINDS``."""
    import torch.nn as nn

    return (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# ----------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class RankStats:
    """A score against top-1 over ``n`` networks (module docstring); ``*_ci`` are 95% intervals.
    ``minus_params``: this row's Kendall tau minus #params' on the same resamples."""

    n: int
    kendall: float
    kendall_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    within: float
    within_ci: tuple[float, float]
    within_pairs: int
    across: float
    across_ci: tuple[float, float]
    across_pairs: int
    minus_params: float
    minus_params_ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _point(x: np.ndarray, y: np.ndarray, fam: np.ndarray) -> np.ndarray:
    """[kendall, spearman, within, across, within_pairs, across_pairs] over the finite pairs."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    x, y, fam = x[ok], y[ok], fam[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.array([np.nan] * 4 + [0, 0])
    prod = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    upper = np.triu(np.ones(prod.shape, bool), 1)
    same = fam[:, None] == fam[None, :]
    out = []
    for mask in (upper & same, upper & ~same):
        c, d = int((prod[mask] > 0).sum()), int((prod[mask] < 0).sum())
        out.append((c - d) / (c + d) if c + d else np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([kendalltau(x, y)[0], spearmanr(x, y)[0], *out, int((upper & same).sum()),
                         int((upper & ~same).sum())])


def rank_stats(scores: Mapping[str, Sequence[float]], top1: Sequence[float], families: Sequence[str],
               n_boot: int = N_BOOT, seed: int = SEED, baseline: str = "params") -> dict[str, RankStats]:
    """:class:`RankStats` of every score in ``scores`` (name -> one value per network), with a
    cluster bootstrap over families shared by all scores (module docstring)."""
    y, fam = np.asarray(top1, float), np.asarray(families)
    X = {k: np.asarray(v, float) for k, v in scores.items()}
    point = {k: _point(x, y, fam) for k, x in X.items()}
    fams = np.unique(fam)
    members = [np.flatnonzero(fam == f) for f in fams]
    rng = np.random.default_rng(seed)
    boot = {k: np.empty((n_boot, 4)) for k in X}
    for b in range(n_boot):
        pick = rng.integers(0, len(fams), len(fams))
        idx = np.concatenate([members[i] for i in pick])
        label = np.concatenate([np.full(len(members[i]), j) for j, i in enumerate(pick)])
        for k, x in X.items():
            boot[k][b] = _point(x[idx], y[idx], label)[:4]

    def ci(a: np.ndarray) -> tuple[float, float]:
        a = a[np.isfinite(a)]
        return (float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))) if len(a) else (math.nan, math.nan)

    out = {}
    for k, p in point.items():
        base = boot.get(baseline)
        diff = boot[k][:, 0] - base[:, 0] if base is not None else np.full(n_boot, np.nan)
        out[k] = RankStats(int(np.sum(np.isfinite(X[k]) & np.isfinite(y))), float(p[0]), ci(boot[k][:, 0]),
                           float(p[1]), ci(boot[k][:, 1]), float(p[2]), ci(boot[k][:, 2]), int(p[4]), float(p[3]),
                           ci(boot[k][:, 3]), int(p[5]),
                           float(p[0] - point[baseline][0]) if baseline in point else math.nan, ci(diff))
    return out


# ------------------------------------------------------------------------------------- evaluate
@dataclass
class LightResult:
    """What :func:`evaluate` returns; :meth:`to_dict` is ``bench/results/proxies_imagenet.json``."""

    models: list[dict[str, Any]]
    proxies: tuple[str, ...]
    default_proxies: tuple[str, ...]
    scores: dict[str, dict[str, float]]
    seconds: dict[str, float]
    failed: dict[str, str]
    sides: dict[str, int]  # networks scored at their published resolution (they cannot run at 128 px)
    rescored: list[str]  # with scores_from and rescore_failed: the networks scored now
    stats: dict[str, dict[str, RankStats]]  # "main" / "with distilled" -> row -> stats
    per_family: dict[str, dict[str, float]]  # row -> family -> within-family Kendall tau (main set)
    search_default: str
    n_boot: int
    scores_from: str | None = None
    scored: dict[str, Any] = field(default_factory=dict)
    date: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> tuple[str, ...]:
        return tuple(self.stats["main"])

    def to_dict(self) -> dict[str, Any]:
        return {"bench": "imagenet-light", "date": self.date, "machine": self.machine, "scored": self.scored,
                "scores_from": self.scores_from,
                "protocol": {"side": PROXY_SIDE, "batch": BATCH, "seed": SEED, "num_classes": CLASSES,
                             "bootstrap": self.n_boot, "bootstrap_unit": "family", "torch_threads": 1},
                "proxies": list(self.proxies), "default_proxies": list(self.default_proxies),
                "search_default": self.search_default, "models": self.models, "scores": self.scores,
                "seconds": self.seconds, "failed": self.failed, "sides": self.sides, "rescored": self.rescored,
                "correlations": {s: {r: st.to_dict() for r, st in rows.items()} for s, rows in self.stats.items()},
                "per_family_kendall": self.per_family}

    def to_markdown(self) -> str:
        out = []
        for setname, rows in self.stats.items():
            n = next(iter(rows.values())).n
            nf = len({m["family"] for m in self.models if setname != "main" or not m["distilled"]})
            out.append(f"**{setname}**: {n} networks in {nf} families; Kendall tau-b and Spearman rho against "
                       f"published ImageNet-1k top-1; within / across: Kendall over pairs of one family / of two; "
                       f"[95% family-bootstrap interval]\n")
            out.append("| score | Kendall tau | Spearman rho | within-family tau | across-family tau | tau - #params |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for r, st in rows.items():
                cells = [f"{st.kendall:+.2f} [{st.kendall_ci[0]:+.2f}, {st.kendall_ci[1]:+.2f}]",
                         f"{st.spearman:+.2f} [{st.spearman_ci[0]:+.2f}, {st.spearman_ci[1]:+.2f}]",
                         f"{st.within:+.2f} [{st.within_ci[0]:+.2f}, {st.within_ci[1]:+.2f}] ({st.within_pairs} pairs)",
                         f"{st.across:+.2f} [{st.across_ci[0]:+.2f}, {st.across_ci[1]:+.2f}]",
                         f"{st.minus_params:+.2f} [{st.minus_params_ci[0]:+.2f}, {st.minus_params_ci[1]:+.2f}]"]
                name = f"**{r}**" if r == self.search_default else r
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)


PRIOR_ROW = "prior (leave-one-family-out)"
MACS_ROW = "MACs at published resolution"


def _default_row(default: Sequence[str]) -> str:
    return f"proxies {'+'.join(default)} (--proxies default)"


def _score_one(task: tuple) -> tuple[str, dict[str, float], dict[str, Any]]:
    """Score one network at 128 px; a network that cannot run at 128 px (fixed attention resolutions)
    at its published resolution instead (recorded as its ``side``); a proxy that fails on it is NaN."""
    import torch

    from predictors.accuracy import proxies as P

    name, arch, names, own_side = task
    side = PROXY_SIDE
    try:
        torch.manual_seed(SEED)
        model = build_network(arch, side)
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, side, side))
    except Exception:  # noqa: BLE001 - try the network's own resolution
        side = int(own_side)
        try:
            torch.manual_seed(SEED)
            model = build_network(arch, side)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            return name, {}, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    t0 = time.perf_counter()
    try:
        row = P.score(model, (3, side, side), names, batch_size=BATCH, num_classes=CLASSES, seed=SEED)
    except Exception:  # noqa: BLE001 - one proxy failing on this network: score them one by one
        row = {}
        for n in names:
            try:
                row.update(P.score(model, (3, side, side), [n], batch_size=BATCH, num_classes=CLASSES, seed=SEED))
            except Exception:  # noqa: BLE001
                row[n] = math.nan
        if all(math.isnan(v) for v in row.values()):
            return name, {}, {"error": f"no proxy could be computed at {side} px"}
    return name, row, {"all": time.perf_counter() - t0, "side": side}


def evaluate(limit: int = 0, proxies: Iterable[str] | None = None, workers: int = 1,
             scores_from: str | os.PathLike | None = None, progress: Progress | None = None, n_boot: int = N_BOOT,
             families: Iterable[str] | None = None, rescore_failed: bool = False) -> LightResult:
    """Score every network of the shipped table (one per architecture) and correlate (module docstring).

    ``limit``: the first N networks of the table (0: all); ``families``: only these families;
    ``proxies``: proxies to score (default all; ``params`` and the default set are always added);
    ``scores_from``: reuse the raw scores of an earlier result JSON (seconds instead of minutes);
    ``rescore_failed``: with it, score now the networks that file lists as failed.
    """
    import json

    import torch

    from predictors.accuracy import proxies as P
    from predictors.accuracy.model import DEFAULT_SOURCE
    from predictors.accuracy.prior import PriorRow, load_prior, load_table
    from search_space.config import ConfigError

    from .proxy_eval import evaluated_proxies

    default = tuple(P.DEFAULT_PROXIES)
    names = evaluated_proxies(proxies)
    table = load_table()
    models = [dict(r) for r in one_per_arch(table["rows"])]
    if families is not None:
        fams = set(families)
        bad = sorted(fams - {m["family"] for m in models})
        if bad:
            raise ConfigError("families", bad[0], "allowed: " + ", ".join(sorted({m["family"] for m in models})))
        models = [m for m in models if m["family"] in fams]
    if limit:
        models = models[:limit]
    prev = None
    if scores_from is not None:
        with open(scores_from) as f:
            prev = json.load(f)
        if prev.get("bench") != "imagenet-light":
            raise ScoresFileError(f"{scores_from}: not an imagenet-light result JSON (bench/results/proxies_imagenet.json)")
        p = prev.get("protocol", {})
        if (p.get("side"), p.get("batch"), p.get("seed"), p.get("num_classes")) != (PROXY_SIDE, BATCH, SEED, CLASSES):
            raise ScoresFileError(f"{scores_from}: scored with other settings ({p}); rescore without scores_from")
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    sides: dict[str, int] = dict(prev.get("sides", {})) if prev is not None else {}
    todo = models if prev is None else []
    if prev is not None:
        failed = {k: v for k, v in prev.get("failed", {}).items() if k in {m["model"] for m in models}}
        for m in models:
            row = prev["scores"].get(m["model"])
            if row is None and rescore_failed and m["model"] in failed:
                todo.append(m)
                del failed[m["model"]]
                continue
            if row is None:
                if m["model"] not in failed:
                    raise ScoresFileError(f"{scores_from}: no scores for {m['model']}; rescore without scores_from")
                continue
            missing = [n for n in names if n not in row]
            if missing:
                raise ScoresFileError(f"{scores_from}: {m['model']} lacks {', '.join(missing)}; rescore")
            scores[m["model"]] = {n: float(row[n]) if row[n] is not None else math.nan for n in names}
            seconds[m["model"]] = float(prev.get("seconds", {}).get(m["model"], math.nan))
    if todo:
        from .proxy_eval import _run

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            tasks = [(m["model"], m["arch"], names, m["img_size"]) for m in todo]
            for name, row, secs in _run(_score_one, tasks, workers, progress, "imagenet-light"):
                if "error" in secs:
                    failed[name] = secs["error"]
                else:
                    scores[name], seconds[name] = row, secs["all"]
                    if secs["side"] != PROXY_SIDE:
                        sides[name] = secs["side"]
        finally:
            torch.set_num_threads(threads)
    models = [m for m in models if m["model"] in scores]

    prior = load_prior()
    held = {r.name: mu for r, mu in zip(prior.rows_, prior.lofo_[prior.form_]["pred"])}
    rows = {}
    for n in names:
        rows[n] = [scores[m["model"]][n] for m in models]
    agg = P.aggregate({m["model"]: scores[m["model"]] for m in models}, default)
    rows[_default_row(default)] = [agg[m["model"]] for m in models]
    rows[MACS_ROW] = [float(m["macs"]) for m in models]
    unseen = [m for m in models if m["model"] not in held]
    if unseen:  # distilled networks: never in the prior's fit, so the full prior's prediction is held out too
        mu, _ = prior.predict([PriorRow(m["params"], m["macs"], m["img_size"], m["depth"], m["family"], m["model"])
                               for m in unseen])
        held.update({m["model"]: float(v) for m, v in zip(unseen, mu)})
    rows[PRIOR_ROW] = [held[m["model"]] for m in models]
    y = [float(m["top1"]) for m in models]
    fam = [m["family"] for m in models]
    main = [i for i, m in enumerate(models) if not m["distilled"]]
    stats = {"main": rank_stats({k: [v[i] for i in main] for k, v in rows.items()}, [y[i] for i in main],
                                [fam[i] for i in main], n_boot)}
    if len(main) < len(models):
        stats["with distilled"] = rank_stats(rows, y, fam, n_boot)
    per_family = {}
    for k, v in rows.items():
        per_family[k] = {}
        for f in sorted({fam[i] for i in main}):
            ix = [i for i in main if fam[i] == f]
            if len(ix) >= 3:
                per_family[k][f] = float(_point(np.array([v[i] for i in ix]), np.array([y[i] for i in ix]),
                                                np.array([f] * len(ix)))[0])
    search_default = PRIOR_ROW if DEFAULT_SOURCE == "prior" else _default_row(default)
    from .proxy_eval import _machine

    return LightResult(models=models, proxies=names, default_proxies=default, scores=scores, seconds=seconds,
                       failed=failed, sides={k: v for k, v in sides.items() if k in scores},
                       rescored=[m["model"] for m in todo] if prev is not None else [], stats=stats, per_family=per_family, search_default=search_default, n_boot=n_boot,
                       scores_from=str(scores_from) if scores_from else None,
                       scored=(dict(prev.get("scored") or {"date": prev.get("date"), "machine": prev.get("machine")})
                               if prev is not None else {}),
                       date=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=_machine())
