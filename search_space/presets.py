"""The released EdgeViT models as configurations of the search space.

Source: saic-fi/edgevit, src/edgevit.py (functions ``edgevit_xxs``, ``edgevit_xs``, ``edgevit_s``).
Channels / depths / heads / MLP ratio / sampling ratio r per stage:

- XXS: (36, 72, 144, 288) / (1, 1, 3, 2) / (1, 2, 4, 8) / 4 / (4, 2, 2, 1), head_dim 36
- XS:  (48, 96, 240, 384) / (1, 1, 3, 1) / (1, 2, 5, 8) / 4 / (4, 2, 2, 1), head_dim 48
- S:   (48, 96, 240, 384) / (1, 2, 5, 3) / (1, 2, 5, 8) / 4 / (4, 2, 2, 1), head_dim 48

The released code builds LocalAgg only where r > 1, so stages 1-3 hold ``lgl`` blocks and stage 4
(r = 1) holds ``global`` blocks. Note that the released S has 13.1 M parameters, not the 11.1 M of
the paper's Table 1; this package reproduces the code.
"""
from __future__ import annotations

from .config import EdgeViTConfig, StageConfig

__all__ = ["PRESETS", "REFERENCE", "edgevit_preset"]


def _official(name: str, widths, depths, head_dim: int) -> EdgeViTConfig:
    ratios = (4, 2, 2, 1)
    stages = tuple(
        StageConfig(
            width=w,
            blocks=("lgl" if r > 1 else "global",) * d,
            mlp_ratio=4,
            head_dim=head_dim,
            sr_ratio=r,
            kernel_size=5,
        )
        for w, d, r in zip(widths, depths, ratios)
    )
    return EdgeViTConfig(stages=stages, resolution=224, num_classes=1000, name=name)


PRESETS: dict[str, EdgeViTConfig] = {
    "edgevit_xxs": _official("edgevit_xxs", (36, 72, 144, 288), (1, 1, 3, 2), 36),
    "edgevit_xs": _official("edgevit_xs", (48, 96, 240, 384), (1, 1, 3, 1), 48),
    "edgevit_s": _official("edgevit_s", (48, 96, 240, 384), (1, 2, 5, 3), 48),
}

#: Published reference numbers for the presets at 224x224 and 1000 classes.
#: params: counted on the released code (saic-fi/edgevit src/edgevit.py), quoted in issue #2;
#: gmacs: EdgeViT paper (Pan et al., ECCV 2022) Table 1 ("0.6/1.1/1.9 G" rounded there; the
#: unrounded 0.551/1.128/1.911 G come from the released code's FLOP count, quoted in issue #2);
#: top1: ImageNet-1k top-1 from the paper's Table 1.
REFERENCE: dict[str, dict[str, float]] = {
    "edgevit_xxs": {"params": 4_067_704, "gmacs": 0.551, "paper_params_m": 4.1, "top1": 74.4},
    "edgevit_xs": {"params": 6_770_056, "gmacs": 1.128, "paper_params_m": 6.7, "top1": 77.5},
    "edgevit_s": {"params": 13_108_168, "gmacs": 1.911, "paper_params_m": 11.1, "top1": 81.0},
}


def edgevit_preset(name: str) -> EdgeViTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"preset={name!r}: unknown; allowed: {', '.join(PRESETS)}") from None
