"""Training results: the record ``nas train`` writes and the accuracy predictor reads.

A result is one line of JSON in ``runs/results.jsonl`` (append-only; one ``write`` of one line
per record, so concurrent trainings never interleave bytes of a line). Readers skip a malformed
line with a warning instead of failing, so one bad line never hides the others. Anchors shipped
with the package (:data:`ANCHORS`) are records too, with their source.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search_space import PRESETS, EdgeViTConfig

__all__ = ["ResultRecord", "ANCHORS", "DEFAULT_RESULTS", "append_result", "read_results"]

log = logging.getLogger(__name__)

DEFAULT_RESULTS = Path("runs") / "results.jsonl"


@dataclass(frozen=True)
class ResultRecord:
    """One finished training of one architecture on one data set.

    ``fidelity`` is ``"full"`` for a complete recipe and ``"short"`` for the few-epoch,
    low-resolution runs of ``--fidelity short``; the accuracy predictor never mixes data sets
    or fidelities in one fit.
    """

    arch_id: str
    config: dict[str, Any]
    dataset: str
    epochs: int
    resolution: int
    top1: float
    top5: float | None = None
    top1_ema: float | None = None
    top5_ema: float | None = None
    fidelity: str = "full"
    source: str = "nas train"
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fidelity not in ("full", "short"):
            raise ValueError(f"fidelity={self.fidelity!r}: allowed: full, short")
        if not 0.0 <= float(self.top1) <= 100.0:
            raise ValueError(f"top1={self.top1!r}: allowed: a percentage in [0, 100]")
        cfg = EdgeViTConfig.from_dict(self.config)
        if cfg.arch_id != self.arch_id:
            raise ValueError(f"arch_id={self.arch_id!r}: does not match its config (which is {cfg.arch_id})")

    @property
    def cfg(self) -> EdgeViTConfig:
        return EdgeViTConfig.from_dict(self.config)

    @property
    def best_top1(self) -> float:
        """The better of the model's and its EMA's top-1 (what the recipe reports)."""
        return max(self.top1, self.top1_ema) if self.top1_ema is not None else self.top1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResultRecord":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def of(cls, cfg: EdgeViTConfig, **fields: Any) -> "ResultRecord":
        return cls(arch_id=cfg.arch_id, config=cfg.to_dict(), **fields)


def _anchor(name: str, top1: float) -> ResultRecord:
    cfg = PRESETS[name]
    return ResultRecord.of(cfg, dataset="imagenet-1k", epochs=300, resolution=cfg.resolution, top1=top1,
                           source="Pan et al., EdgeViTs, ECCV 2022, ImageNet-1k results table (top-1, 224x224, 300 epochs)",
                           date="2022-10-23")


#: The paper's ImageNet-1k top-1 for the three released models (Pan et al. 2022, ImageNet-1k results table).
ANCHORS: tuple[ResultRecord, ...] = (
    _anchor("edgevit_xxs", 74.4),
    _anchor("edgevit_xs", 77.5),
    _anchor("edgevit_s", 81.0),
)


def append_result(record: ResultRecord, path: str | os.PathLike = DEFAULT_RESULTS) -> Path:
    """Append ``record`` as one JSON line (one ``os.write`` on an ``O_APPEND`` descriptor)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_results(path: str | os.PathLike = DEFAULT_RESULTS, dataset: str | None = None, fidelity: str | None = None,
                 anchors: bool = True) -> list[ResultRecord]:
    """Records from ``path`` (missing file: none), plus :data:`ANCHORS` when ``anchors``; filtered by
    ``dataset`` / ``fidelity`` when given. A later record for the same (arch, data set, epochs,
    resolution, fidelity) replaces an earlier one, so re-training updates rather than duplicates."""
    recs: list[ResultRecord] = list(ANCHORS) if anchors else []
    p = Path(path)
    if p.exists():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append(ResultRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError) as e:
                log.warning("%s:%d: skipped a malformed result record (%s)", p, i, e)
    out: dict[tuple, ResultRecord] = {}
    for r in recs:
        if dataset is not None and r.dataset != dataset:
            continue
        if fidelity is not None and r.fidelity != fidelity:
            continue
        out[(r.arch_id, r.dataset, r.epochs, r.resolution, r.fidelity)] = r
    return list(out.values())

