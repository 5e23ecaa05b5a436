"""Cost of a network counted on its real PyTorch module, and the cost features of whole spaces.

Why count on the module: the project counts EdgeViT MACs with
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on the real module, so the public
benchmarks' networks (NAS-Bench-201, :mod:`.nb201`; FBNet, :mod:`.fbnet`) are counted the same way;
parameters are ``numel`` of the module. The few-shot latency adapter of the HELP benchmark
(``bench/help_fewshot.py``) reads these counts as its cost profile.

- :func:`profile_module`: MACs, parameters and a per-operator-kind profile (calls, tensor sizes,
  MACs by kind) of any module, from one forward pass on zeros;
- :class:`CostTable`: the same numbers for a whole space in about a second, by adding up the
  profiles of each network's parts, each profiled on its real module;
- :func:`space_features`: profiles and one-hot encodings of a list of architectures, by the table
  or by counting every whole module (cached on disk, ``default_cache_dir``).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from search_space.files import atomic_write

from .fbnet import FBNET_BLOCKS, FBNET_HEAD, FBNET_STAGES, FBNetNetwork, build_fbnet, fbnet_block, fbnet_encoding, \
    fbnet_layer_shapes, parse_fbnet
from .nb201 import NB201_OPS, NB201Network, build_nb201, nb201_encoding, nb201_op, parse_nb201

__all__ = ["profile_module", "profile_network", "check_profile", "count_macs_params", "CostTable", "SPACES",
           "space_features", "default_cache_dir"]

# ----------------------------------------------------------------------------------------------
# Cost on the real module: MACs, parameters and a per-operator-kind profile
# ----------------------------------------------------------------------------------------------

def _conv_kind(m: nn.Conv2d) -> str:
    k = m.kernel_size[0]
    if m.groups == 1:
        return f"conv{k}"
    if m.groups == m.in_channels == m.out_channels:
        return f"dw{k}"
    return f"gconv{k}"


def _leaf_kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.Conv2d):
        return _conv_kind(m)
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)):
        return "pool"
    if isinstance(m, nn.BatchNorm2d):
        return "bn"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.Linear):
        return "linear"
    # the spaces' own leaf ops (Zero, ChannelShuffle) name their kind
    return getattr(m, "cost_kind", None)  # identity and containers: no cost of their own


def profile_module(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Run ``model`` once on zeros of ``input_shape`` (CPU, eval, no grad) and count its cost.

    Returns ``macs`` (``FlopCounterMode`` FLOPs / 2, as the project counts EdgeViT), ``params``
    (parameter count) and, per leaf-operator kind (``conv3``, ``conv1``, ``gconv1``, ``dw3``, ``dw5``,
    ``pool``, ``bn``, ``relu``, ``linear``, ``zero``, ``shuffle``): ``n_<kind>`` (calls),
    ``in_<kind>`` / ``out_<kind>`` (input / output tensor elements) and, for convs and linears,
    ``macs_<kind>`` (output elements x input channels per group x kernel area). The per-kind conv
    and linear MACs add up to ``macs``; :func:`check_profile` asserts it.
    """
    prof: dict[str, float] = {}

    def hook(mod: nn.Module, args, out) -> None:
        kind = _leaf_kind(mod)
        if kind is None:
            return
        x = args[0]
        prof[f"n_{kind}"] = prof.get(f"n_{kind}", 0) + 1
        prof[f"in_{kind}"] = prof.get(f"in_{kind}", 0) + x.numel()
        prof[f"out_{kind}"] = prof.get(f"out_{kind}", 0) + out.numel()
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            macs = out.numel() * mod.in_features
        else:
            return
        prof[f"macs_{kind}"] = prof.get(f"macs_{kind}", 0) + macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model.eval()(torch.zeros(*input_shape))
    finally:
        for h in handles:
            h.remove()
    prof["macs"] = fc.get_total_flops() // 2
    prof["params"] = sum(p.numel() for p in model.parameters())
    return prof


def check_profile(prof: dict[str, float]) -> None:
    """The per-kind MACs must add up to FlopCounterMode's total."""
    parts = sum(v for k, v in prof.items() if k.startswith("macs_"))
    if parts != prof["macs"]:
        raise AssertionError(f"per-kind MACs {parts} != FlopCounterMode MACs {prof['macs']}")


def count_macs_params(model: nn.Module, input_size: int) -> tuple[int, int]:
    """(MACs, parameters) of ``model`` for one ``input_size`` x ``input_size`` RGB image."""
    p = profile_module(model, (1, 3, input_size, input_size))
    return int(p["macs"]), int(p["params"])


def profile_network(space: str, arch: str | Sequence[str]) -> dict[str, float]:
    """:func:`profile_module` of the whole network for ``arch`` (``space``: nasbench201 | fbnet)."""
    build, _, size = SPACES[_check_space(space)]
    return profile_module(build(arch), (1, 3, size, size))


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; known: {sorted(SPACES)}")
    return space


def _add(acc: dict[str, float], prof: dict[str, float], times: float = 1.0) -> None:
    for k, v in prof.items():
        acc[k] = acc.get(k, 0) + times * v


class CostTable:
    """Exact network profiles by composition, for whole spaces at once.

    A network's profile is the sum of the profiles of its parts, because every count in it is a sum
    over leaf operators. The table profiles each *part* on its real module at the shape it sees in
    the network (NAS-Bench-201: the skeleton without cells, and each op at each stage; FBNet: stem,
    head and classifier, and each of the 9 blocks at each of the 22 layers), then adds them up.
    ``profile_network`` on the whole module gives the same numbers (tests and the bench check this);
    the table is ~10^4 times faster, which is what makes counting all 20,625 networks cheap.
    """

    def __init__(self, space: str):
        self.space = _check_space(space)
        self.base: dict[str, float] = {}
        self.parts: dict[tuple[int, str], dict[str, float]] = {}
        if space == "nasbench201":
            _add(self.base, profile_module(NB201Network(NB201_OPS[:1] * 6, cells_per_stage=0), (1, 3, 32, 32)))
            for stage in range(3):
                c, r = 16 * 2 ** stage, 32 // 2 ** stage
                for op in NB201_OPS:
                    self.parts[(stage, op)] = profile_module(nb201_op(op, c), (1, c, r, r))
        else:
            net = FBNetNetwork(("skip",) * 22)
            last = fbnet_layer_shapes()[-1]
            side = -(-last[3] // last[2])
            for mod, shape in ((net.stem, (1, 3, 224, 224)), (net.head, (1, FBNET_STAGES[-1][0], side, side)),
                               (net.pool, (1, FBNET_HEAD, side, side)), (net.classifier, (1, FBNET_HEAD))):
                _add(self.base, profile_module(mod, shape))
            for layer, (c_in, c_out, stride, side) in enumerate(fbnet_layer_shapes()):
                for b in FBNET_BLOCKS:
                    self.parts[(layer, b)] = profile_module(fbnet_block(b, c_in, c_out, stride), (1, c_in, side, side))
        keys = set(self.base)
        for p in self.parts.values():
            keys |= set(p)
        self.keys: tuple[str, ...] = tuple(["macs", "params"] + sorted(keys - {"macs", "params"}))

    def profile(self, arch: str | Sequence[str]) -> dict[str, float]:
        acc = dict(self.base)
        if self.space == "nasbench201":
            ops = parse_nb201(arch) if isinstance(arch, str) else tuple(arch)
            for stage in range(3):
                for op in ops:
                    _add(acc, self.parts[(stage, op)], times=5)
        else:
            for layer, b in enumerate(parse_fbnet(arch)):
                _add(acc, self.parts[(layer, b)])
        return acc

    def matrix(self, archs: Sequence[str]) -> np.ndarray:
        """Profiles of ``archs`` as a float64 matrix, columns in ``self.keys`` order (vectorised)."""
        kidx = {k: i for i, k in enumerate(self.keys)}

        def vec(p: dict[str, float]) -> np.ndarray:
            v = np.zeros(len(self.keys))
            for k, x in p.items():
                v[kidx[k]] = x
            return v

        base = vec(self.base)
        if self.space == "nasbench201":
            # parts[stage, op] summed over stages, times 5 cells; then counts of each op over 6 edges
            per_op = np.stack([5 * sum(vec(self.parts[(s, op)]) for s in range(3)) for op in NB201_OPS])
            counts = np.stack([nb201_encoding(a).reshape(6, -1).sum(0) for a in archs])
            return base + counts @ per_op
        tab = np.stack([[vec(self.parts[(l, b)]) for b in FBNET_BLOCKS] for l in range(22)])  # (22, 9, K)
        onehot = np.stack([fbnet_encoding(a).reshape(22, -1) for a in archs])  # (N, 22, 9)
        return base + np.einsum("nlb,lbk->nk", onehot, tab)


#: space -> (build(arch) -> module, encode(arch) -> one-hot vector, input side)
SPACES: dict[str, tuple[Callable[..., nn.Module], Callable[..., np.ndarray], int]] = {
    "nasbench201": (build_nb201, nb201_encoding, 32),
    "fbnet": (build_fbnet, fbnet_encoding, 224),
}


# ----------------------------------------------------------------------------------------------
# Features for a whole space, and the cache of the whole-module path
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$EDGEVIT_NAS_FEATURE_CACHE`` or ``<tmp>/edgevit_nas_help_features``."""
    env = os.environ.get("EDGEVIT_NAS_FEATURE_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "edgevit_nas_help_features"


_CACHE_VERSION = 2  # bump when a module or the counting changes


def _archs_digest(archs: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(archs).encode()).hexdigest()


def space_features(space: str, archs: Sequence[str], method: str = "table",
                   cache_dir: str | Path | None = None, verbose: bool = False) -> dict:
    """Cost profiles and encodings of ``archs``: ``{"keys", "profile" (N x K float64),
    "encoding" (N x E float32), "seconds"}``.

    ``method="table"``: :class:`CostTable` (exact, about a second for a whole space).
    ``method="module"``: :func:`profile_network` on every whole network (measured on this
    project's 2-core machine: 40-80 ms per NAS-Bench-201 network, 90-180 ms per FBNet network,
    i.e. 10-20 minutes per space); the result is cached in
    ``cache_dir`` (default :func:`default_cache_dir`) as ``<space>_v2.npz`` keyed by a digest of
    ``archs``. ``seconds`` is the time it took to count (0.0 when read from the cache).
    """
    archs = list(archs)
    encode = SPACES[_check_space(space)][1]
    enc = np.stack([encode(a) for a in archs]).astype(np.float32)
    t0 = time.perf_counter()
    if method == "table":
        table = CostTable(space)
        return {"keys": table.keys, "profile": table.matrix(archs), "encoding": enc,
                "seconds": time.perf_counter() - t0}
    if method != "module":
        raise ValueError(f"method must be 'table' or 'module', not {method!r}")
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"{space}_v{_CACHE_VERSION}.npz"
    digest = _archs_digest(archs)
    cached = _read_cache(path, digest, len(archs))
    if cached is not None:
        return {"keys": cached[0], "profile": cached[1], "encoding": enc, "seconds": 0.0}
    profs = []
    for i, a in enumerate(archs):
        profs.append(profile_network(space, a))
        if verbose and (i + 1) % 1000 == 0:
            print(f"[features] {space}: {i + 1}/{len(archs)} in {time.perf_counter() - t0:.0f} s", flush=True)
    keys = set()
    for p in profs:
        keys |= set(p)
    keys = tuple(["macs", "params"] + sorted(keys - {"macs", "params"}))
    mat = np.array([[p.get(k, 0) for k in keys] for p in profs], dtype=np.float64)
    dt = time.perf_counter() - t0
    # plain arrays only (no object arrays), so the reader never needs pickle; atomic: a crash leaves
    # the old cache or the new one
    atomic_write(path, lambda f: np.savez_compressed(f, digest=np.array(digest), keys=np.array(keys), profile=mat,
                                                     seconds=np.array(dt)))
    if verbose:
        print(f"[features] {space}: counted {len(archs)} whole networks in {dt:.1f} s; cached at {path}")
    return {"keys": keys, "profile": mat, "encoding": enc, "seconds": dt}


def _read_cache(path: Path, digest: str, n: int) -> tuple[tuple[str, ...], np.ndarray] | None:
    """``(keys, profile)`` of a cache file written for the same architectures, else ``None`` (a
    missing, stale, truncated or foreign file is counted again, never trusted)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) != digest:
                return None
            keys = tuple(str(k) for k in z["keys"])
            profile = np.asarray(z["profile"], dtype=np.float64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if profile.shape != (n, len(keys)) or not np.all(np.isfinite(profile)):
        return None
    return keys, profile
