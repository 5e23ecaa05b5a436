"""What the farm measures: an EdgeViT configuration or any other network that says how to build it.

The farm was written for :class:`EdgeViTConfig` alone; comparing EdgeViT with light CNNs and
measuring nn-Meter's blocks needs other networks measured by the same protocol, cached and stored
the same way. Every measurable network follows :class:`Network`: an ``arch_id`` (12 hex digits:
the store's key and the export cache's file name), a ``spec`` a user can type again, the input
shape, the EdgeViT configuration when there is one, and ``build()`` -> an eval-mode PyTorch module
with seeded random weights (latency does not depend on the values).

Two kinds live here: :class:`EdgeViTNetwork` (wraps a configuration; its id is the configuration's)
and :class:`TimmNetwork` (``timm:<name>[@<side>]``: any model timm builds, reparameterised for
inference where timm knows how, as it would be deployed). Others (nn-Meter's blocks,
:mod:`predictors.latency.phone.torch_blocks`) implement the same protocol where they live.
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .config import ConfigError, EdgeViTConfig, load_config

__all__ = ["Network", "EdgeViTNetwork", "HalfBlockNetwork", "TimmNetwork", "TIMM_PREFIX", "as_network", "load_network",
           "spec_id", "half_blocks"]

TIMM_PREFIX = "timm:"


def spec_id(spec: str) -> str:
    """The 12-hex-digit id of a network known by its spec (the first 12 of SHA-256), as ``arch_id``."""
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


@runtime_checkable
class Network(Protocol):
    """Anything the farm can export and measure."""

    @property
    def arch_id(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def spec(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def config_dict(self) -> dict[str, Any] | None: ...

    def build(self, seed: int = 0) -> Any: ...


@dataclass(frozen=True)
class EdgeViTNetwork:
    """An EdgeViT configuration as a :class:`Network` (same id, same export as before)."""

    cfg: EdgeViTConfig

    @property
    def arch_id(self) -> str:
        return self.cfg.arch_id

    @property
    def name(self) -> str | None:
        return self.cfg.name

    @property
    def spec(self) -> str:
        return self.cfg.name or self.cfg.arch_id

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 3, self.cfg.resolution, self.cfg.resolution)

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def build(self, seed: int = 0):
        import torch

        from .model import build_model

        torch.manual_seed(seed)
        return build_model(self.cfg).eval()


@dataclass(frozen=True)
class TimmNetwork:
    """A timm model by name at an input side (default: the side timm's pretrained configuration uses)."""

    model: str
    resolution: int

    @classmethod
    def parse(cls, spec: str) -> "TimmNetwork":
        """``timm:<name>`` or ``timm:<name>@<side>``; a one-line :class:`ConfigError` naming what is wrong."""
        import timm

        from . import model as _registers_edgevit_with_timm  # noqa: F401  (timm:edgevit_xxs is a name too)

        body = spec[len(TIMM_PREFIX):] if spec.startswith(TIMM_PREFIX) else spec
        name, _, side = body.partition("@")
        name = name.split(".", 1)[0]  # a pretrained tag (name.tag) names the same architecture
        known = timm.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}" if close else "; see timm.list_models()"
            raise ConfigError("model", spec, f"is not a timm architecture{hint}")
        if side:
            if not side.isdigit() or not 32 <= int(side) <= 4096:
                raise ConfigError("model", spec, "the side after @ must be an integer from 32 to 4096, e.g. timm:mobilenetv2_100@224")
            res = int(side)
        else:
            cfg = timm.models.get_pretrained_cfg(name)
            res = int(cfg.input_size[-1]) if cfg is not None and getattr(cfg, "input_size", None) else 224
        return cls(name, res)

    @property
    def arch_id(self) -> str:
        return spec_id(self.spec)

    @property
    def name(self) -> str:
        return self.model

    @property
    def spec(self) -> str:
        return f"{TIMM_PREFIX}{self.model}@{self.resolution}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 3, self.resolution, self.resolution)

    def config_dict(self) -> None:
        return None

    def build(self, seed: int = 0):
        """timm's model with random weights from ``seed``, 1000 classes, eval mode, reparameterised for
        inference (FastViT, RepViT, MobileOne fuse their branches as deployed)."""
        import timm
        import torch

        from . import model as _registers_edgevit_with_timm  # noqa: F401

        torch.manual_seed(seed)
        model = timm.create_model(self.model, pretrained=False, num_classes=1000).eval()
        try:
            from timm.utils.model import reparameterize_model
        except ImportError:  # an older timm: the training-time graph is what gets measured
            return model
        return reparameterize_model(model).eval()


def half_blocks(cfg: EdgeViTConfig) -> list[str]:
    """The half-block names of ``cfg`` in execution order, as :func:`search_space.operators` names them
    (``Op.block``): ``stages.<i>.downsample``, ``stages.<i>.blocks.<j>.local_agg`` / ``.self_attn``, ``head``."""
    out = []
    for i, st in enumerate(cfg.stages):
        out.append(f"stages.{i}.downsample")
        for j, kind in enumerate(st.blocks):
            if kind in ("lgl", "local"):
                out.append(f"stages.{i}.blocks.{j}.local_agg")
            if kind in ("lgl", "global"):
                out.append(f"stages.{i}.blocks.{j}.self_attn")
    return out + ["head"]


def _head(model):
    """The classifier end of an EdgeViT (BatchNorm, global pool, Linear) as a module of its own (torch is
    imported here: this module stays importable without it, for the search driver and the farm)."""
    from torch import nn

    class _Head(nn.Module):
        def __init__(self, model: nn.Module):
            super().__init__()
            self.norm, self.head = model.norm, model.head

        def forward(self, x):
            return self.head(self.norm(x).mean((2, 3)))

    return _Head(model)


@dataclass(frozen=True)
class HalfBlockNetwork:
    """One half-block of a candidate (a name of :func:`half_blocks`) as a network of its own, at the
    input it gets inside the candidate: what the phone model's mapping prices part by part, measured."""

    cfg: EdgeViTConfig
    half_block: str

    def __post_init__(self) -> None:
        if self.half_block not in half_blocks(self.cfg):
            raise ConfigError("half_block", self.half_block, "must be one of the candidate's half-blocks "
                              f"({', '.join(half_blocks(self.cfg)[:4])}, ...)")

    @property
    def spec(self) -> str:
        return f"part:{self.cfg.arch_id}:{self.half_block}"

    @property
    def arch_id(self) -> str:
        return spec_id(self.spec)

    @property
    def name(self) -> str:
        return self.half_block

    @property
    def input_shape(self) -> tuple[int, ...]:
        from .config import STAGE_STRIDES

        res = self.cfg.resolution
        if self.half_block == "head":
            return (1, self.cfg.stages[-1].width, res // STAGE_STRIDES[-1], res // STAGE_STRIDES[-1])
        i = int(self.half_block.split(".")[1])
        if self.half_block.endswith("downsample"):
            if i == 0:
                return (1, 3, res, res)
            return (1, self.cfg.stages[i - 1].width, res // STAGE_STRIDES[i - 1], res // STAGE_STRIDES[i - 1])
        return (1, self.cfg.stages[i].width, res // STAGE_STRIDES[i], res // STAGE_STRIDES[i])

    def config_dict(self) -> None:
        return None

    def build(self, seed: int = 0):
        model = EdgeViTNetwork(self.cfg).build(seed)
        if self.half_block == "head":
            return _head(model).eval()
        return model.get_submodule(self.half_block).eval()


def as_network(x: EdgeViTConfig | Network) -> Network:
    """Any measurable thing as a :class:`Network` (a configuration is wrapped)."""
    if isinstance(x, EdgeViTConfig):
        return EdgeViTNetwork(x)
    if isinstance(x, Network):
        return x
    raise TypeError(f"expected an EdgeViTConfig or a Network, got {type(x).__name__}")


def load_network(spec: str) -> EdgeViTConfig | TimmNetwork:
    """What a user types: ``timm:<name>[@side]``, or a preset / JSON configuration (:func:`load_config`)."""
    if str(spec).startswith(TIMM_PREFIX):
        return TimmNetwork.parse(str(spec))
    return load_config(spec)
