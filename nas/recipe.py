"""The training recipe (:class:`TrainConfig`): the released EdgeViT recipe's settings and their checks.

Its own module, free of torch, so that the command line can show the recipe's defaults in
``nas train --help`` (and every other command start) without importing torch and timm;
:mod:`nas.train` uses it and re-exports it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from search_space.config import ConfigError

__all__ = ["RECIPE_SOURCE", "RUNTIME_FIELDS", "TrainConfig"]

#: Where the defaults of :class:`TrainConfig` come from.
RECIPE_SOURCE = "released EdgeViT recipe: saic-fi/edgevit src/main.py (DeiT-style, timm 0.3.2)"
#: TrainConfig fields that change how fast a run goes or what it leaves behind, never its result; a
#: resume may change them.
RUNTIME_FIELDS = ("workers", "export_onnx")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults are the released EdgeViT recipe (``saic-fi/edgevit``,
    ``src/main.py``, run as 8 GPUs x batch 256); see the README's recipe table for each source.

    ``batch_size`` is per process; the learning rate is ``lr`` when given, otherwise
    ``lr_base * global batch / lr_base_batch`` (the released linear scaling rule).
    """

    epochs: int = 300
    batch_size: int = 256
    lr: float | None = None
    lr_base: float = 5e-4
    lr_base_batch: int = 512
    opt: str = "adamw"
    opt_eps: float = 1e-8
    weight_decay: float = 0.05
    clip_grad: float | None = None
    sched: str = "cosine"
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    #: False: the lr changes once per epoch, as released; True: every update (smoother for short runs).
    sched_on_updates: bool = False
    aa: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    train_interpolation: str = "bicubic"
    scale_min: float = 0.08
    #: Repeated augmentation (DeiT's RASampler, timm's RepeatAugSampler): each image this many times
    #: per epoch, on different processes. The released run had 3 on 8 GPUs; 0 (off) here, see README.
    repeated_aug: int = 0
    reprob: float = 0.25
    remode: str = "pixel"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    drop_path: float = 0.1
    model_ema: bool = True
    model_ema_decay: float = 0.99996
    #: Mixed precision; only ever used on CUDA. ``amp_dtype``: auto (bfloat16 where supported), bfloat16, float16.
    amp: bool = True
    amp_dtype: str = "auto"
    crop_pct: float = 0.875
    #: None: the candidate's own resolution.
    resolution: int | None = None
    #: None: min(8, CPU cores per process).
    workers: int | None = None
    seed: int = 0
    max_train_images: int | None = None
    max_val_images: int | None = None
    fidelity: str = "full"
    export_onnx: bool = True

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def short(cls, epochs: int = 3, **changes: Any) -> "TrainConfig":
        """The low-fidelity recipe the search ranks candidates with: a few epochs, one epoch of
        per-update warm-up, light augmentation (no RandAugment, Mixup, CutMix or erasing), no drop
        path, no EMA (at decay 0.99996 it would still be the initial weights), no ONNX export."""
        base = dict(epochs=epochs, warmup_epochs=min(1, epochs - 1), sched_on_updates=True, aa=None, reprob=0.0,
                    mixup=0.0, cutmix=0.0, drop_path=0.0, model_ema=False, fidelity="short", export_onnx=False)
        base.update(changes)
        return cls(**base)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def lr_for(self, world_size: int) -> float:
        """The learning rate a run with ``world_size`` processes uses."""
        if self.lr is not None:
            return self.lr
        return self.lr_base * self.batch_size * world_size / self.lr_base_batch


def _check(tc: TrainConfig) -> None:
    """One-line errors for a recipe that cannot run (each names the field and what is allowed)."""
    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(name, getattr(tc, name), allowed)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(is_int(tc.epochs) and tc.epochs >= 1, "epochs", "must be an integer >= 1")
    need(is_int(tc.batch_size) and tc.batch_size >= 1, "batch_size", "must be an integer >= 1")
    need(tc.lr is None or tc.lr > 0, "lr", "must be > 0 (or unset: scaled from lr_base)")
    need(tc.lr_base > 0, "lr_base", "must be > 0")
    need(is_int(tc.lr_base_batch) and tc.lr_base_batch >= 1, "lr_base_batch", "must be an integer >= 1")
    need(tc.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(tc.clip_grad is None or tc.clip_grad > 0, "clip_grad", "must be > 0 (or unset: no clipping)")
    need(is_int(tc.warmup_epochs) and tc.warmup_epochs >= 0, "warmup_epochs", "must be an integer >= 0")
    need(tc.min_lr >= 0 and tc.warmup_lr >= 0, "min_lr", "min_lr and warmup_lr must be >= 0")
    need(0 < tc.scale_min <= 1, "scale_min", "must be in (0, 1]")
    need(is_int(tc.repeated_aug) and tc.repeated_aug >= 0, "repeated_aug", "must be an integer >= 0 (0: off; released: 3)")
    need(0 <= tc.reprob <= 1, "reprob", "must be a probability in [0, 1]")
    need(tc.mixup >= 0 and tc.cutmix >= 0, "mixup", "mixup and cutmix alphas must be >= 0 (0: off)")
    need(0 <= tc.mixup_prob <= 1 and 0 <= tc.mixup_switch_prob <= 1, "mixup_prob", "must be a probability in [0, 1]")
    need(0 <= tc.smoothing < 1, "smoothing", "must be in [0, 1)")
    need(0 <= tc.drop_path < 1, "drop_path", "must be in [0, 1)")
    need(0 < tc.model_ema_decay < 1, "model_ema_decay", "must be in (0, 1)")
    need(tc.amp_dtype in ("auto", "bfloat16", "float16"), "amp_dtype", "allowed: auto, bfloat16, float16")
    need(0 < tc.crop_pct <= 1, "crop_pct", "must be in (0, 1]")
    need(tc.resolution is None or is_int(tc.resolution), "resolution", "must be an integer (a multiple of 32)")
    need(tc.workers is None or (is_int(tc.workers) and tc.workers >= 0), "workers", "must be an integer >= 0")
    need(tc.max_train_images is None or (is_int(tc.max_train_images) and tc.max_train_images >= 1),
         "max_train_images", "must be an integer >= 1")
    need(tc.max_val_images is None or (is_int(tc.max_val_images) and tc.max_val_images >= 1),
         "max_val_images", "must be an integer >= 1")
    need(tc.fidelity in ("full", "short"), "fidelity", "allowed: full, short")
    need(not (tc.mixup_active and tc.batch_size % 2), "batch_size",
         "must be even while mixup or cutmix is on (timm's Mixup pairs each image with the batch reversed)")
