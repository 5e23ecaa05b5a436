"""The ranges a search explores, and define-by-run sampling of configurations from them.

Sampling speaks Optuna's trial API (``suggest_int``, ``suggest_categorical``), so any Optuna
sampler drives it and the same code draws uniform random candidates through a tiny seeded
stand-in for a trial. Every draw is a valid configuration by construction:

- a stage's width is ``heads x head_dim``, so the head dimension always divides it (this is why the
  width grid is in steps of the head dimension: it contains 36/72/144/288 of EdgeViT-XXS and the
  48/96/240/384 of XS and S);
- the sampling ratio r is drawn from the divisors of that stage's feature-map side at the drawn
  resolution, under a parameter name that carries the side (``s1.sr_ratio@56``), because Optuna
  distributions must not change under one name;
- head dimension and r are drawn only for stages with an attention half, the LocalAgg kernel only
  for stages with a LocalAgg half (Optuna's conditional, define-by-run style).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from .config import BLOCK_KINDS, LIMITS, NUM_STAGES, STAGE_STRIDES, ConfigError, EdgeViTConfig, StageConfig

__all__ = ["Suggester", "SearchSpace", "DEFAULT_SPACE", "RandomSuggester", "REFERENCE_SEED", "reference_set"]


class Suggester(Protocol):
    """The part of ``optuna.trial.Trial`` that sampling uses; ``optuna.Trial`` and ``FixedTrial`` satisfy it."""

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomSuggester:
    """Uniform, seeded choices behind the trial API: fast enough for tens of thousands of draws."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        v = int(self.rng.integers(low, high + 1))
        self.params[name] = v
        return v

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        v = choices[int(self.rng.integers(len(choices)))]
        self.params[name] = v
        return v


@dataclass(frozen=True)
class SearchSpace:
    """Ranges per stage (index 0 is the stride-4 stage). Defaults contain EdgeViT-XXS, -XS and -S."""

    resolutions: tuple[int, ...] = (160, 192, 224, 256)
    depths: tuple[tuple[int, int], ...] = ((1, 2), (1, 3), (2, 6), (1, 3))
    heads: tuple[tuple[int, int], ...] = ((1, 2), (1, 4), (2, 8), (4, 10))
    head_dims: tuple[int, ...] = (16, 24, 32, 36, 48, 64)
    mlp_ratios: tuple[int, ...] = (2, 3, 4)
    sr_ratios: tuple[int, ...] = (1, 2, 4, 8)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    block_kinds: tuple[str, ...] = BLOCK_KINDS
    num_classes: int = 1000

    def __post_init__(self) -> None:
        for name in ("depths", "heads"):
            ranges = getattr(self, name)
            if len(ranges) != NUM_STAGES or any(lo < 1 or hi < lo for lo, hi in ranges):
                raise ConfigError(name, ranges, f"needs {NUM_STAGES} (low, high) pairs with 1 <= low <= high")
        for r in self.resolutions:
            if r % STAGE_STRIDES[-1]:
                raise ConfigError("resolutions", r, "must be multiples of 32")
        for k in self.block_kinds:
            if k not in BLOCK_KINDS:
                raise ConfigError("block_kinds", k, "allowed: " + ", ".join(BLOCK_KINDS))
        # A space never reaches past the configuration's hard limits, so everything it samples validates.
        top = {"resolution": max(self.resolutions), "depth": max(hi for _, hi in self.depths),
               "width": max(hi for _, hi in self.heads) * max(self.head_dims), "mlp_ratio": max(self.mlp_ratios),
               "kernel_size": max(self.kernel_sizes)}
        for name, value in top.items():
            if value > LIMITS[name]:
                raise ConfigError(f"{name} (largest)", value, f"beyond the configuration limit {LIMITS[name]}")

    # ------------------------------------------------------------------ choices
    def sr_choices(self, side: int) -> tuple[int, ...]:
        """Sampling ratios allowed on a ``side x side`` feature map: those of ``sr_ratios`` dividing it."""
        return tuple(r for r in self.sr_ratios if side % r == 0)

    def widths(self, stage: int, head_dim: int | None = None) -> tuple[int, ...]:
        lo, hi = self.heads[stage]
        dims = self.head_dims if head_dim is None else (head_dim,)
        return tuple(sorted({h * n for h in dims for n in range(lo, hi + 1)}))

    # ------------------------------------------------------------------ sampling
    def sample(self, trial: Suggester, num_classes: int | None = None) -> EdgeViTConfig:
        """Draw one configuration through ``trial`` (define-by-run)."""
        res = trial.suggest_categorical("resolution", self.resolutions)
        stages = []
        for i in range(NUM_STAGES):
            p = f"s{i + 1}."
            side = res // STAGE_STRIDES[i]
            depth = trial.suggest_int(p + "depth", *self.depths[i])
            blocks = tuple(trial.suggest_categorical(f"{p}b{j + 1}.kind", self.block_kinds) for j in range(depth))
            head_dim = trial.suggest_categorical(p + "head_dim", self.head_dims)
            heads = trial.suggest_int(p + "heads", *self.heads[i])
            mlp = trial.suggest_categorical(p + "mlp_ratio", self.mlp_ratios)
            has_attn = any(k in ("lgl", "global") for k in blocks)
            has_local = any(k in ("lgl", "local") for k in blocks)
            sr = trial.suggest_categorical(f"{p}sr_ratio@{side}", self.sr_choices(side)) if has_attn else None
            k = trial.suggest_categorical(p + "kernel_size", self.kernel_sizes) if has_local else None
            stages.append(
                StageConfig(width=head_dim * heads, blocks=blocks, mlp_ratio=mlp, head_dim=head_dim, sr_ratio=sr, kernel_size=k)
            )
        return EdgeViTConfig(
            stages=tuple(stages), resolution=res, num_classes=self.num_classes if num_classes is None else num_classes
        )

    def sample_random(self, n: int, seed: int = 0) -> list[EdgeViTConfig]:
        """``n`` configurations drawn uniformly per choice with a fixed seed (duplicates possible)."""
        rng = np.random.default_rng(seed)
        return [self.sample(RandomSuggester(rng)) for _ in range(n)]

    def sample_distinct(self, n: int, seed: int = 0) -> list[EdgeViTConfig]:
        """``n`` distinct configurations for ``seed``: :meth:`sample_random` draws, drawing again past
        duplicates deterministically (so the first draws equal ``sample_random(n, seed)``'s)."""
        out: dict[str, EdgeViTConfig] = {}
        batch = 0
        while len(out) < n:
            for cfg in self.sample_random(n, seed=seed + 1_000_003 * batch):
                out.setdefault(cfg.arch_id, cfg)
                if len(out) == n:
                    break
            batch += 1
        return list(out.values())

    def params_of(self, cfg: EdgeViTConfig) -> dict[str, Any]:
        """The trial parameters that make :meth:`sample` return ``cfg`` (for ``study.enqueue_trial``).

        Raises :class:`ConfigError` naming the first field outside this space.
        """
        self.check(cfg)
        params: dict[str, Any] = {"resolution": cfg.resolution}
        for i, st in enumerate(cfg.stages):
            p = f"s{i + 1}."
            params[p + "depth"] = st.depth
            for j, kind in enumerate(st.blocks):
                params[f"{p}b{j + 1}.kind"] = kind
            lo, hi = self.heads[i]
            head_dim = st.head_dim if st.head_dim is not None else next(
                h for h in self.head_dims if st.width % h == 0 and lo <= st.width // h <= hi
            )
            params[p + "head_dim"] = head_dim
            params[p + "heads"] = st.width // head_dim
            params[p + "mlp_ratio"] = st.mlp_ratio
            if st.has_attention:
                params[f"{p}sr_ratio@{cfg.feature_side(i)}"] = st.sr_ratio
            if st.has_local:
                params[p + "kernel_size"] = st.kernel_size
        return params

    # ------------------------------------------------------------------ membership
    def check(self, cfg: EdgeViTConfig) -> None:
        """Raise :class:`ConfigError` for the first field of ``cfg`` outside this space's ranges."""
        if cfg.resolution not in self.resolutions:
            raise ConfigError("resolution", cfg.resolution, f"outside the search space; allowed: {_fmt(self.resolutions)}")
        for i, st in enumerate(cfg.stages):
            p = f"stages[{i}]."
            lo, hi = self.depths[i]
            if not lo <= st.depth <= hi:
                raise ConfigError(p + "depth", st.depth, f"outside the search space; allowed: {lo}..{hi}")
            for j, kind in enumerate(st.blocks):
                if kind not in self.block_kinds:
                    raise ConfigError(f"{p}blocks[{j}]", kind, f"outside the search space; allowed: {_fmt(self.block_kinds)}")
            if st.mlp_ratio not in self.mlp_ratios:
                raise ConfigError(p + "mlp_ratio", st.mlp_ratio, f"outside the search space; allowed: {_fmt(self.mlp_ratios)}")
            if st.has_attention:
                if st.head_dim not in self.head_dims:
                    raise ConfigError(p + "head_dim", st.head_dim, f"outside the search space; allowed: {_fmt(self.head_dims)}")
                allowed = self.widths(i, st.head_dim)
                if st.width not in allowed:
                    raise ConfigError(p + "width", st.width, f"outside the search space at head_dim {st.head_dim}; allowed: {_fmt(allowed)}")
                allowed_sr = self.sr_choices(cfg.feature_side(i))
                if st.sr_ratio not in allowed_sr:
                    raise ConfigError(p + "sr_ratio", st.sr_ratio, f"outside the search space at side {cfg.feature_side(i)}; allowed: {_fmt(allowed_sr)}")
            elif st.width not in self.widths(i):
                raise ConfigError(p + "width", st.width, f"outside the search space; allowed: {_fmt(self.widths(i))}")
            if st.has_local and st.kernel_size not in self.kernel_sizes:
                raise ConfigError(p + "kernel_size", st.kernel_size, f"outside the search space; allowed: {_fmt(self.kernel_sizes)}")

    def contains(self, cfg: EdgeViTConfig) -> bool:
        try:
            self.check(cfg)
        except ConfigError:
            return False
        return True

    # ------------------------------------------------------------------ size
    def size(self) -> int:
        """Number of distinct architectures (distinct canonical forms, hence distinct ids) in the space."""
        total = 0
        for res in self.resolutions:
            prod = 1
            for i in range(NUM_STAGES):
                prod *= self._stage_count(i, res // STAGE_STRIDES[i])
            total += prod
        return total

    def _stage_count(self, i: int, side: int) -> int:
        lo, hi = self.heads[i]
        attn_widths = len(self.head_dims) * (hi - lo + 1)  # (width, head_dim) pairs; distinct per head_dim
        plain_widths = len(self.widths(i))
        n_sr = len(self.sr_choices(side))
        n_k, n_mlp = len(self.kernel_sizes), len(self.mlp_ratios)
        kinds = set(self.block_kinds)
        count = 0
        for depth in range(self.depths[i][0], self.depths[i][1] + 1):
            # Classify block-kind tuples by which halves they contain.
            only_local = int("local" in kinds)  # every block LocalAgg-only: no attention fields
            only_global = int("global" in kinds)  # every block attention-only: no kernel field
            n_all = len(kinds) ** depth
            mixed = n_all - only_local - only_global  # has both an attention and a LocalAgg half
            count += only_local * plain_widths * n_mlp * n_k
            count += only_global * attn_widths * n_mlp * n_sr
            count += mixed * attn_widths * n_mlp * n_sr * n_k
        return count

    def describe(self) -> dict[str, Any]:
        size = self.size()
        return {
            "resolutions": list(self.resolutions),
            "depths": [list(d) for d in self.depths],
            "heads": [list(h) for h in self.heads],
            "head_dims": list(self.head_dims),
            "mlp_ratios": list(self.mlp_ratios),
            "sr_ratios": list(self.sr_ratios),
            "kernel_sizes": list(self.kernel_sizes),
            "block_kinds": list(self.block_kinds),
            "widths": [list(self.widths(i)) for i in range(NUM_STAGES)],
            "size": size,
            "log10_size": round(math.log10(size), 2),
        }


def _fmt(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


DEFAULT_SPACE = SearchSpace()


#: Seed of the project's fixed reference candidates (the EdgeViT paper's arXiv date; any fixed seed
#: would do). Never change it: few-shot calibrations and the proxy reference population are only
#: comparable across machines and versions because they are always the same networks.
REFERENCE_SEED = 20221023


def reference_set(n: int, seed: int = REFERENCE_SEED, space: SearchSpace = DEFAULT_SPACE) -> list[EdgeViTConfig]:
    """The fixed reference candidates: EdgeViT-XXS, XS and S, then distinct seeded random draws, ``n`` in all.

    The one builder behind both fixed sets of the project: the first 10 are the candidates every
    few-shot calibration measures (HELP's idea of a fixed reference set), and the first 67 are the
    population that proxy scores are placed in.
    """
    from .presets import PRESETS

    refs = [PRESETS[k] for k in ("edgevit_xxs", "edgevit_xs", "edgevit_s")]
    ids = {r.arch_id for r in refs}
    extra = [c for c in space.sample_distinct(n + len(refs), seed) if c.arch_id not in ids]
    return (refs + extra)[:n]
