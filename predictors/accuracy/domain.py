"""The range an accuracy score was validated on, and whether a candidate lies inside it.

Why: a score fitted or checked on light networks of 1-20 M parameters says nothing about a 40 M one,
yet the search would happily crown it. Every accuracy estimator states its :class:`Domain` (the
parameters, MACs and input resolutions of the networks its evidence comes from, and what that
evidence is); the search flags each candidate outside it (``nas.search.outputs.candidate_row``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["Domain"]


@dataclass(frozen=True)
class Domain:
    """Closed ranges of parameters, MACs and input resolution; ``what`` says what was validated there."""

    params: tuple[float, float]
    macs: tuple[float, float]
    resolution: tuple[int, int]
    what: str

    @classmethod
    def of(cls, params: Sequence[float], macs: Sequence[float], resolution: Sequence[int], what: str) -> "Domain":
        """The smallest domain holding every network given."""
        if not len(params) or not (len(params) == len(macs) == len(resolution)):
            raise ValueError("Domain.of: give the same, non-zero number of params, MACs and resolutions")
        return cls((float(min(params)), float(max(params))), (float(min(macs)), float(max(macs))),
                   (int(min(resolution)), int(max(resolution))), what)

    def union(self, other: "Domain", what: str | None = None) -> "Domain":
        return Domain((min(self.params[0], other.params[0]), max(self.params[1], other.params[1])),
                      (min(self.macs[0], other.macs[0]), max(self.macs[1], other.macs[1])),
                      (min(self.resolution[0], other.resolution[0]), max(self.resolution[1], other.resolution[1])),
                      what if what is not None else self.what)

    def outside(self, params: float, macs: float, resolution: int) -> list[str]:
        """One short phrase per quantity outside the domain (empty: inside), e.g. ``params 21.1 M > 20.0 M``."""
        out = []
        for name, v, (lo, hi), scale, unit, fmt in (
                ("params", params, self.params, 1e6, " M", ".1f"), ("MACs", macs, self.macs, 1e9, " G", ".2f"),
                ("resolution", resolution, self.resolution, 1, "", "d")):
            conv = (lambda x: int(x)) if fmt == "d" else (lambda x: x / scale)
            if v < lo:
                out.append(f"{name} {format(conv(v), fmt)}{unit} < {format(conv(lo), fmt)}{unit}")
            elif v > hi:
                out.append(f"{name} {format(conv(v), fmt)}{unit} > {format(conv(hi), fmt)}{unit}")
        return out

    def outside_cfg(self, cfg: Any) -> list[str]:
        """:meth:`outside` for an :class:`~search_space.EdgeViTConfig` (analytic params and MACs)."""
        from search_space import cost

        c = cost(cfg)
        return self.outside(c.params, c.macs, cfg.resolution)

    def range_text(self) -> str:
        return (f"params {self.params[0] / 1e6:.1f}-{self.params[1] / 1e6:.1f} M, MACs {self.macs[0] / 1e9:.2f}-"
                f"{self.macs[1] / 1e9:.2f} G, resolution {self.resolution[0]}-{self.resolution[1]}")

    def to_dict(self) -> dict[str, Any]:
        return {"params": list(self.params), "macs": list(self.macs), "resolution": list(self.resolution),
                "what": self.what}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Domain":
        try:
            p, m, r = (tuple(d[k]) for k in ("params", "macs", "resolution"))
            if not all(len(x) == 2 and x[0] <= x[1] for x in (p, m, r)):
                raise ValueError
            return cls((float(p[0]), float(p[1])), (float(m[0]), float(m[1])), (int(r[0]), int(r[1])), str(d["what"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError("domain: expected {params: [lo, hi], macs: [lo, hi], resolution: [lo, hi], what}") from None
