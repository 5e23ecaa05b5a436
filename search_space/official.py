"""Checkpoints of the released EdgeViT code (saic-fi/edgevit, ``src/edgevit.py``) in this package's model.

Why a module of its own: the released networks are configurations of this search space (the three
presets), so their trained weights can start a search's winner or be compared against it; only the
tensor names differ. The tensors map one to one:

==============================================  ==========================================
released code                                   this package
==============================================  ==========================================
``patch_embed{i}.proj`` / ``.norm``             ``stages.{i-1}.downsample.proj`` / ``.norm``
``blocks{i}.{j}.LocalAgg.attn`` (depthwise k)   ``stages.{i-1}.blocks.{j}.local_agg.conv_dw``
``blocks{i}.{j}.LocalAgg.<other>``              ``stages.{i-1}.blocks.{j}.local_agg.<other>``
``blocks{i}.{j}.SelfAttn.attn.LocalProp``       ``stages.{i-1}.blocks.{j}.self_attn.attn.local_prop``
``blocks{i}.{j}.SelfAttn.<other>``              ``stages.{i-1}.blocks.{j}.self_attn.<other>``
``norm``, ``head``                              ``norm``, ``head``
==============================================  ==========================================

The released modules also declare some tensors in another order (the patch embedding's norm before
its conv, LocalAgg's ``conv2`` before the depthwise ``attn``, attention's ``proj`` before
``LocalProp``), which matters to nothing that maps by name. The released ``PatchEmbed`` normalises
tokens with ``nn.LayerNorm`` where this package uses ``LayerNorm2d`` on the feature map: the same
weights, the same function.

Foreign files are never unpickled: a ``.safetensors`` file, a state dict already in memory, or a
``.pth``/``.pt`` read with ``torch.load(weights_only=True)`` (which refuses any Python object but
tensors and plain containers). Every refusal is one :class:`CheckpointError` line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "official_name", "convert_official", "read_state_dict", "load_official"]

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"^stages\.(\d+)\.downsample\.(proj|norm)\.(.+)$", "patch_embed{i}.\\2.\\3"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.local_agg\.conv_dw\.(.+)$", "blocks{i}.\\2.LocalAgg.attn.\\3"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.local_agg\.(.+)$", "blocks{i}.\\2.LocalAgg.\\3"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.self_attn\.attn\.local_prop\.(.+)$", "blocks{i}.\\2.SelfAttn.attn.LocalProp.\\3"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.self_attn\.(.+)$", "blocks{i}.\\2.SelfAttn.\\3"),
    (r"^(norm|head)\.(.+)$", "\\1.\\2"),
))
#: Keys a released checkpoint file may wrap its weights in (DeiT's training script saves ``model``).
_WRAPPERS = ("model", "state_dict", "model_ema")
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message is one line naming the tensor or file."""


def official_name(name: str) -> str:
    """The released code's name of this package's state-dict entry ``name``."""
    for pattern, template in _RULES:
        m = pattern.match(name)
        if m:
            stage = str(int(m.group(1)) + 1) if template.startswith(("patch_embed", "blocks")) else ""
            return m.expand(template.replace("{i}", stage))
    raise CheckpointError(f"tensor {name!r}: has no counterpart in the released EdgeViT code")


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape)) if hasattr(t, "shape") else type(t).__name__


def convert_official(state: Mapping[str, Any], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The released ``state`` renamed for ``model``, with every tensor checked: none missing, none
    left over, every shape equal. Nothing is loaded here."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint: expected a mapping of tensor names to tensors, got {type(state).__name__}")
    state = _unwrap(state)
    ours = model.state_dict()
    wanted = {official_name(k): k for k in ours}
    given = set(state)
    missing = sorted(set(wanted) - given)
    if missing:
        raise CheckpointError(f"checkpoint: {len(missing)} tensor(s) of this configuration missing, first "
                              f"{missing[0]!r} (for {wanted[missing[0]]}); is it another size (XXS/XS/S)?")
    unexpected = sorted(k for k in given - set(wanted))
    if unexpected:
        raise CheckpointError(f"checkpoint: {len(unexpected)} tensor(s) this configuration has no place for, first "
                              f"{str(unexpected[0])[:80]!r}; is it another size (XXS/XS/S) or another network?")
    out = {}
    for off, name in wanted.items():
        t = state[off]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"checkpoint: {off!r} is a {type(t).__name__}, not a tensor")
        if t.shape != ours[name].shape:
            raise CheckpointError(f"checkpoint: {off!r} has shape {_shape(t)}, this configuration's {name} needs "
                                  f"{_shape(ours[name])}")
        out[name] = t
    return out


def _unwrap(state: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in _WRAPPERS:  # {"model": {...}, "optimizer": ..., "epoch": ...} as a training script saves it
        inner = state.get(key)
        if isinstance(inner, Mapping) and not isinstance(state.get("head.weight"), torch.Tensor):
            state = inner
            break
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):  # saved from DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """The tensors of a checkpoint file, without unpickling anything foreign."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file" if not p.exists() else f"checkpoint {p}: not a file")
    if p.suffix not in _SUFFIXES:
        raise CheckpointError(f"checkpoint {p}: unknown kind; allowed: {', '.join(_SUFFIXES)}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p), device="cpu")
        return torch.load(p, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any refusal of a foreign file is one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if p.suffix != ".safetensors" and "weights_only" in str(e):
            first = ("it holds Python objects besides tensors (e.g. a training script's 'args'), which are never "
                     "unpickled here; save its 'model' entry as safetensors where the file is trusted")
        raise CheckpointError(f"checkpoint {p}: cannot be read ({first})") from None


def load_official(model: torch.nn.Module, source: str | os.PathLike | Mapping[str, Any]) -> torch.nn.Module:
    """Load a released EdgeViT checkpoint (a file or a state dict) into ``model``; returns ``model``.

    ``model`` must be the configuration the checkpoint was trained as (``build_model(PRESETS[...])``);
    anything else is refused before a single tensor is copied, so the model is never half-loaded.
    """
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    model.load_state_dict(convert_official(state, model), strict=True)
    return model
