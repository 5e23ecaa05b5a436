"""``farm sample``: measure random candidates of the search space to train latency predictors.

The candidate list is a pure function of (space, seed, n), so a rerun after an interrupt (Ctrl-C or
kill -9) draws the same list and skips what the store already holds for the device: at most the
measurement in flight is lost. Each result is written as soon as it exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from search_space import DEFAULT_SPACE, EdgeViTConfig, SearchSpace

from .measure import Farm
from .measurement import Measurement
from .profiles import DeviceProfile

__all__ = ["SampleReport", "plan", "sample_and_measure"]


@dataclass
class SampleReport:
    planned: int
    skipped: int
    measured: list[Measurement] = field(default_factory=list)

    @property
    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.measured:
            out[m.status] = out.get(m.status, 0) + 1
        return out


def plan(n: int, seed: int, space: SearchSpace = DEFAULT_SPACE) -> list[EdgeViTConfig]:
    """``n`` distinct candidates for ``seed`` (:meth:`SearchSpace.sample_distinct`)."""
    return space.sample_distinct(n, seed)


def sample_and_measure(farm: Farm, profile: DeviceProfile, n: int, seed: int = 0, space: SearchSpace = DEFAULT_SPACE,
                       retry_failed: bool = False, use_ray: bool = False,
                       on_result: Callable[[Measurement, int, int], None] | None = None) -> SampleReport:
    """Measure the ``n`` planned candidates that the store does not hold yet for ``profile``.

    ``on_result(m, done, todo)`` is called after each stored result (progress bars hook in here).
    """
    if farm.store is None:
        raise ValueError("farm.store: sampling needs a store to resume from")
    cfgs = plan(n, seed, space)
    statuses = ("ok", "disturbed") if retry_failed else ("ok", "disturbed", "failed")
    have = farm.store.arch_ids(profile.id, statuses)
    todo = [c for c in cfgs if c.arch_id not in have]
    report = SampleReport(planned=len(cfgs), skipped=len(cfgs) - len(todo))
    if use_ray:
        from .ray_farm import measure_remote

        results = measure_remote(farm, todo, profile)
    else:
        results = (farm.measure(c, profile) for c in todo)
    for m in results:
        report.measured.append(m)
        if on_result:
            on_result(m, len(report.measured), len(todo))
    return report
