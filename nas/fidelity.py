"""Low fidelity: rank a search's top candidates by a few epochs of real training (successive halving).

Zero-cost proxies rank well on average but can be wrong for any one candidate
(``bench/results/proxy_selection.json``). Users who can afford some training get a better ranking
from the real thing at low fidelity: every candidate is trained for ``rungs[0]`` epochs at a reduced
resolution on at most ``max_train_images`` images; the best ``1 / eta`` go on to ``rungs[1]`` epochs
(trained again from scratch: a cosine schedule cut short is not the same run as a longer one), and so
on. Each short training appends a ``fidelity="short"`` record (:mod:`predictors.accuracy.results`), so the
accuracy predictor for the user's data set can learn from them.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from predictors.accuracy.results import DEFAULT_RESULTS, ResultRecord
from search_space import EdgeViTConfig
from search_space.files import atomic_write, write_json

__all__ = ["HalvingConfig", "Rung", "HalvingResult", "successive_halving"]


@dataclass(frozen=True)
class HalvingConfig:
    """Successive-halving schedule. ``resolution`` is a target; each candidate trains at the side
    nearest to it that its sampling ratios allow (:meth:`EdgeViTConfig.nearest_side`)."""

    rungs: tuple[int, ...] = (1, 3)
    eta: int = 2
    resolution: int = 128
    max_train_images: int | None = 2000
    max_val_images: int | None = 1000
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rungs or any(int(e) < 1 for e in self.rungs) or list(self.rungs) != sorted(self.rungs):
            raise ValueError(f"rungs={self.rungs!r}: allowed: increasing epoch counts >= 1, e.g. 1,3")
        if self.eta < 2:
            raise ValueError(f"eta={self.eta!r}: allowed: an integer >= 2")
        if self.resolution < 32:
            raise ValueError(f"resolution={self.resolution!r}: allowed: >= 32")


@dataclass
class Rung:
    epochs: int
    arch_ids: list[str]
    top1: dict[str, float] = field(default_factory=dict)


@dataclass
class HalvingResult:
    """Ranking best first: survivors of the last rung by its top-1, then those dropped earlier by
    the top-1 of the last rung they reached."""

    config: HalvingConfig
    rungs: list[Rung]
    ranking: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "rungs": [asdict(r) for r in self.rungs], "ranking": self.ranking}

    def best_top1(self, arch_id: str) -> tuple[int, float] | None:
        """(epochs, top-1) of the last rung ``arch_id`` reached."""
        for r in reversed(self.rungs):
            if arch_id in r.top1:
                return r.epochs, r.top1[arch_id]
        return None


def successive_halving(cfgs: Sequence[EdgeViTConfig], data: str | os.PathLike, hc: HalvingConfig = HalvingConfig(),
                       out_dir: str | os.PathLike = "runs/short", results_path: str | os.PathLike | None = DEFAULT_RESULTS,
                       progress: Callable[[str], None] | None = None,
                       train_fn: Callable[..., ResultRecord] | None = None) -> HalvingResult:
    """Train ``cfgs`` by successive halving on ``data``; resumable (each short run resumes from its
    own checkpoint, a finished one returns its stored result); writes ``out_dir/halving.json``."""
    if train_fn is None:
        from .train import load_data, short_train

        train_fn = short_train
        data = load_data(data)  # validate and scan once, not once per candidate
    by_id = {c.arch_id: c for c in cfgs}
    alive = list(dict.fromkeys(c.arch_id for c in cfgs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rungs: list[Rung] = []
    for epochs in hc.rungs:
        rung = Rung(int(epochs), list(alive))
        for i, aid in enumerate(alive):
            cfg = by_id[aid]
            side = cfg.nearest_side(hc.resolution)
            if progress:
                progress(f"rung {len(rungs) + 1}/{len(hc.rungs)}: {aid} ({i + 1}/{len(alive)}), {epochs} epochs at {side}px")
            rec = train_fn(cfg, data, epochs=int(epochs), resolution=side, max_train_images=hc.max_train_images,
                           max_val_images=hc.max_val_images,
                           out_dir=out / f"{aid}-e{epochs}-r{side}", results_path=results_path,
                           batch_size=hc.batch_size, seed=hc.seed)
            rung.top1[aid] = float(rec.top1)
        rungs.append(rung)
        keep = max(1, math.ceil(len(alive) / hc.eta))
        alive = sorted(alive, key=lambda a: -rung.top1[a])[:keep]
        _write(out / "halving.json", HalvingResult(hc, rungs, []).to_dict())
    ranking: list[str] = []
    for r in reversed(rungs):
        for aid in sorted(r.top1, key=lambda a: -r.top1[a]):
            if aid not in ranking:
                ranking.append(aid)
    result = HalvingResult(hc, rungs, ranking)
    _write(out / "halving.json", result.to_dict())
    return result


def _write(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)


def rerank_search(result, data: str | os.PathLike, hc: HalvingConfig = HalvingConfig(), top_k: int = 8,
                  results_path: str | os.PathLike | None = DEFAULT_RESULTS,
                  progress: Callable[[str], None] | None = None) -> tuple[HalvingResult, list]:
    """Re-rank a finished search's ``top_k`` feasible candidates (highest accuracy score first) by
    successive halving on ``data``. Writes ``fidelity.json`` and makes the short-training winner the
    run's ``best.json`` (the search's own choice is kept as ``best_proxy.json``), and appends the
    ranking to ``report.md``. Returns the halving result and the candidates in its order."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k!r}: allowed: an integer >= 1")
    pool = sorted(result.feasible, key=lambda c: -c.score)[:top_k]
    if not pool:
        raise ValueError("fidelity short: the search has no feasible candidate to train")
    run_dir = Path(result.run_dir)
    res = successive_halving([c.cfg for c in pool], data, hc, out_dir=run_dir / "short", results_path=results_path,
                             progress=progress)
    by_id = {c.arch_id: c for c in pool}
    ordered = [by_id[a] for a in res.ranking]
    rows = []
    for rank, c in enumerate(ordered, 1):
        epochs, top1 = res.best_top1(c.arch_id)
        rows.append({"rank": rank, "arch_id": c.arch_id, "short_top1": top1, "short_epochs": epochs,
                     "score": c.score, "latency_ms": c.effective_latency_ms, "params": c.params, "macs": c.macs,
                     "config": c.cfg.to_dict()})
    _write(run_dir / "fidelity.json", {"data": str(data), "top_k": top_k, **res.to_dict(), "candidates": rows})
    best = run_dir / "best.json"
    if best.exists() and not (run_dir / "best_proxy.json").exists():
        os.replace(best, run_dir / "best_proxy.json")
    atomic_write(best, ordered[0].cfg.to_json() + "\n")
    lines = ["", "## Low fidelity (successive halving)", "",
             f"Top {len(pool)} feasible candidates by accuracy score, trained on `{data}` for {list(hc.rungs)} epochs "
             f"(eta {hc.eta}) at about {hc.resolution} px on at most {hc.max_train_images} images. `best.json` is now "
             "the short-training winner; the search's own choice is `best_proxy.json`.", "",
             "| rank | id | short top-1 % (epochs) | accuracy score | latency ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['rank']} | {r['arch_id']} | {r['short_top1']:.2f} ({r['short_epochs']}) | {r['score']:.3f} | "
              f"{r['latency_ms']:.2f} |" for r in rows]
    report = run_dir / "report.md"
    text = report.read_text() if report.exists() else ""
    text = text.split("\n## Low fidelity (successive halving)")[0].rstrip("\n") + "\n"  # a rerun replaces its section
    atomic_write(report, text + "\n".join(lines) + "\n")
    return res, ordered
