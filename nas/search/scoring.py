"""Scoring candidates: the models loaded once, applied in the driver or as Ray tasks, in ask order."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from search_space import EdgeViTConfig, cost

__all__ = ["Scorer", "LocalPool", "RayPool", "error_line"]


@dataclass
class Scorer:
    """What scores a candidate: the accuracy model, the device's latency model and, if known, its energy model.

    Picklable: the driver puts one into Ray's object store and each worker process keeps its copy.
    """

    accuracy: Any
    latency: Any
    energy: Any = None

    def score(self, cfgs: Sequence[EdgeViTConfig]) -> list[dict[str, Any]]:
        """One record per candidate: score, latency and energy with their std, params, MACs (or ``error``)."""
        cfgs = list(cfgs)
        if not cfgs:
            return []
        try:
            return self._score(cfgs)
        except Exception:  # one bad candidate must not sink the others: score them one by one
            if len(cfgs) == 1:
                return [{"error": error_line()}]
            return [self.score([c])[0] for c in cfgs]

    def _score(self, cfgs: list[EdgeViTConfig]) -> list[dict[str, Any]]:
        acc, acc_std = self.accuracy.predict(cfgs)
        lat, lat_std = self.latency.predict(cfgs)
        if self.energy is not None:
            en, en_std = self.energy.predict(cfgs)
        else:
            en = en_std = np.full(len(cfgs), np.nan)
        out = []
        for i, c in enumerate(cfgs):
            k = cost(c)
            rec = {"score": float(acc[i]), "score_std": float(acc_std[i]), "latency_ms": float(lat[i]),
                   "latency_std_ms": float(lat_std[i]), "energy_mj": float(en[i]), "energy_std_mj": float(en_std[i]),
                   "params": int(k.params), "macs": int(k.macs)}
            if not (math.isfinite(rec["score"]) and math.isfinite(rec["latency_ms"])):
                rec = {"error": f"score {rec['score']}, latency {rec['latency_ms']}: not finite"}
            out.append(rec)
        return out


def error_line() -> str:
    e = sys.exc_info()[1]
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


_WORKER_SCORERS: dict[str, Scorer] = {}


def _score_in_worker(key: str, holder: list, cfg_dicts: list[dict]) -> list[dict[str, Any]]:
    # A Ray task. ``holder`` wraps the scorer's ObjectRef so Ray does not resolve it per call: each
    # worker process fetches and unpickles it once, then reuses it.
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        import ray

        _WORKER_SCORERS.clear()  # one search at a time per worker: drop the previous search's models
        scorer = _WORKER_SCORERS[key] = ray.get(holder[0])
    return scorer.score([EdgeViTConfig.from_dict(d) for d in cfg_dicts])


class LocalPool:
    """Scores in the driver process (``ray=False``): the same batches, the same results."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def map(self, chunks: list[list[EdgeViTConfig]]) -> list[list[dict[str, Any]]]:
        return [self.scorer.score(c) for c in chunks]


class RayPool:
    """Scores each chunk as a Ray task (one CPU each); results come back in submission order."""

    def __init__(self, scorer: Scorer, key: str):
        import ray

        self.ray = ray
        self.key = key
        self.holder = [ray.put(scorer)]
        self.task = ray.remote(num_cpus=1, max_retries=1)(_score_in_worker)

    def map(self, chunks: list[list[EdgeViTConfig]]) -> list[list[dict[str, Any]]]:
        refs = [self.task.remote(self.key, self.holder, [c.to_dict() for c in chunk]) for chunk in chunks]
        out = []
        for ref, chunk in zip(refs, chunks):
            try:
                out.append(self.ray.get(ref))
            except Exception:  # a crashed worker: its candidates fail, the search goes on
                out.append([{"error": error_line()}] * len(chunk))
        return out

