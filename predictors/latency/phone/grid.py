"""Where an EdgeViT leaves a phone table's grid, which the phone model can then only extrapolate.

Two ways, found by the same-device check (bench/phone_validation.py, twelfth round, 2026-12-03): a
LocalAgg whose depthwise kernel is larger than the table's conv blocks hold (nn-Meter's: 3 and 5;
EdgeViT's space allows 7), and an attention whose side (tokens per row after sparse sampling) is
larger than the table's attention blocks hold (nn-Meter's: 32, i.e. 1,024 tokens). Inside both the
model was 81-82% within 10% of the measured latency; beyond them it made its largest misses. The
bench and the search's note use these same definitions.
"""
from __future__ import annotations

from search_space import EdgeViTConfig

from .blocks import parse_key

__all__ = ["local_agg_kernel", "stage_attention_side", "attention_side", "table_attention_side", "beyond_grid"]


def local_agg_kernel(cfg: EdgeViTConfig) -> int:
    """The largest LocalAgg depthwise kernel of ``cfg`` (0 without LocalAgg)."""
    return max([st.kernel_size or 0 for st in cfg.stages if any(b in ("lgl", "local") for b in st.blocks)] or [0])


def stage_attention_side(cfg: EdgeViTConfig, i: int) -> int:
    """The side (tokens per row) stage ``i``'s attention attends over: its feature side over its sparse-sampling ratio."""
    return cfg.feature_side(i) // (cfg.stages[i].sr_ratio or 1)


def attention_side(cfg: EdgeViTConfig) -> int:
    """The largest side any attention of ``cfg`` attends over (:func:`stage_attention_side`); 0 without attention."""
    return max([stage_attention_side(cfg, i) for i, st in enumerate(cfg.stages) if st.has_attention] or [0])


def table_attention_side(table) -> int:
    """The largest ``hw`` of a block table's ``transattn`` keys (nn-Meter's grid: 32, i.e. 1,024 tokens)."""
    return max([parse_key(k).hw for k in table if k.startswith("transattn_")] or [0])


def beyond_grid(cfg: EdgeViTConfig, max_kernel: int, max_attention_side: int) -> list[str]:
    """What of ``cfg`` lies beyond a table holding conv kernels up to ``max_kernel`` and attention up to
    ``max_attention_side`` tokens per row, one phrase each (empty: inside the grid)."""
    out = []
    k = local_agg_kernel(cfg)
    if k > max_kernel:
        out.append(f"LocalAgg kernel {k} > {max_kernel}")
    side = attention_side(cfg)
    if side > max_attention_side:
        out.append(f"attention over {side} x {side} tokens > {max_attention_side} x {max_attention_side}")
    return out
