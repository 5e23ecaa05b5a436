"""The candidate architecture: one frozen dataclass per stage, one for the network.

A configuration is the single currency of the project: the model, the ONNX export, the operator
graph, the cost model, the measurement store and the search all take an :class:`EdgeViTConfig`.
It is validated on construction, so an object that exists is buildable, and it has a canonical
JSON form whose hash is the architecture id. The canonical form drops what does not change the
network (the head dimension and sampling ratio of a stage without attention, the LocalAgg kernel
of a stage without LocalAgg) so that two ways of writing the same architecture share one id.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "BLOCK_KINDS",
    "LIMITS",
    "MAX_CONFIG_BYTES",
    "NUM_STAGES",
    "STAGE_STRIDES",
    "ConfigError",
    "StageConfig",
    "EdgeViTConfig",
    "load_config",
]

#: ``lgl``: LocalAgg then the sparse-attention half (the paper's block); ``local``: LocalAgg only;
#: ``global``: the attention half only (what the official code builds in stages with r = 1).
BLOCK_KINDS: tuple[str, ...] = ("lgl", "local", "global")
NUM_STAGES = 4
#: Output stride of each stage: the stem convolution has stride 4, each later one stride 2.
STAGE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)

#: Hard limits of a configuration, checked before anything is allocated or looped over. They are
#: generous multiples (8x or more) of the default space's maxima (resolution 256, width 640, depth 6,
#: MLP ratio 4, kernel 7), so any network a person means passes, while a typo such as
#: ``"depth": 10000000`` or a width of 10^12 is refused in constant time instead of exhausting memory
#: or looping for minutes. ``SearchSpace`` refuses ranges beyond them.
LIMITS: dict[str, int] = {
    "resolution": 4096,
    "width": 8192,
    "depth": 64,
    "mlp_ratio": 32,
    "kernel_size": 63,
    "num_classes": 1_000_000,
    "name": 200,
}
#: Size limit of a configuration file (a configuration is about 1 kB; a wrapping record such as
#: ``best.json`` a few kB).
MAX_CONFIG_BYTES = 1024 * 1024

_STAGE_KEYS = ("width", "blocks", "depth", "mlp_ratio", "head_dim", "heads", "sr_ratio", "kernel_size")
_NET_KEYS = ("resolution", "num_classes", "stages", "name")


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the field, the value and what is allowed."""

    def __init__(self, field_path: str, value: Any, allowed: str):
        self.field = field_path
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_path}={_short(value)}: {allowed}")


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to one short line: a hostile value (a 200 kB string, a 5,000-digit integer,
    whose repr Python even refuses) must not become a 200 kB error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 20:
        return f"<a {type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text):,} characters)"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(path: str, v: Any, lo: int = 1, hi: int | None = None) -> int:
    """An integer in ``[lo, hi]`` (an integral float such as ``4.0`` counts), in O(1)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v) or v < lo:
        raise ConfigError(path, v, f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    if hi is not None and v > hi:
        raise ConfigError(path, v, f"must be an integer >= {lo} and <= {hi}")
    return v


def _divisors(n: int, most: int = 16) -> str:
    """The divisors of ``n`` for an error message, found in O(sqrt(n)) steps and listed at most ``most``
    (callers bound ``n`` first, so this never walks a hostile 10^12)."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
        d += 1
    found = small + large[::-1]
    shown = ", ".join(map(str, found[:most]))
    return shown if len(found) <= most else f"{shown}, ... ({len(found)} in all)"


def _normalise_ratio(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


@dataclass(frozen=True)
class StageConfig:
    """One stage: a strided patch embedding followed by ``len(blocks)`` blocks of width ``width``.

    ``head_dim`` and ``sr_ratio`` only matter when a block has the attention half (``lgl`` or
    ``global``); ``kernel_size`` (the LocalAgg depthwise kernel, 5 in the paper) only when a block
    has LocalAgg (``lgl`` or ``local``). Irrelevant ones are stored as ``None``.
    ``mlp_ratio`` sets the hidden width of every MLP in the stage (LocalAgg's conv MLP and the
    transformer MLP), as in the released code.
    """

    width: int
    blocks: tuple[str, ...]
    mlp_ratio: float = 4
    head_dim: int | None = None
    sr_ratio: int | None = 1
    kernel_size: int | None = 5

    def __post_init__(self) -> None:
        # Structural checks that need no network context; the rest happen in EdgeViTConfig.
        # Every bound is checked before anything proportional to the value is built or looped over.
        if isinstance(self.blocks, (list, tuple)) and len(self.blocks) > LIMITS["depth"]:
            raise ConfigError("blocks", self.blocks, f"at most {LIMITS['depth']} blocks per stage")
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        if not blocks:
            raise ConfigError("blocks", list(blocks), "needs at least one block")
        if len(blocks) > LIMITS["depth"]:
            raise ConfigError("blocks", blocks, f"at most {LIMITS['depth']} blocks per stage")
        for j, kind in enumerate(blocks):
            if not isinstance(kind, str) or kind not in BLOCK_KINDS:
                raise ConfigError(f"blocks[{j}]", kind, f"unknown block kind; allowed: {', '.join(BLOCK_KINDS)}")
        object.__setattr__(self, "width", _check_int("width", self.width, 1, LIMITS["width"]))
        r = self.mlp_ratio
        if (not isinstance(r, (int, float)) or isinstance(r, bool) or not math.isfinite(r)
                or not 0 < r <= LIMITS["mlp_ratio"]):
            raise ConfigError("mlp_ratio", r, f"must be a finite number > 0 and <= {LIMITS['mlp_ratio']}")
        object.__setattr__(self, "mlp_ratio", _normalise_ratio(r))
        if int(self.width * self.mlp_ratio) < 1:
            raise ConfigError("mlp_ratio", self.mlp_ratio, f"gives an empty MLP at width {self.width}")
        if self.has_attention:
            if self.head_dim is None:
                raise ConfigError("head_dim", None, "required when a block has attention (or give heads)")
            hd = _check_int("head_dim", self.head_dim, 1, self.width)
            if self.width % hd:
                raise ConfigError("head_dim", hd, f"must divide width {self.width}; allowed: {_divisors(self.width)}")
            object.__setattr__(self, "head_dim", hd)
            sr = _check_int("sr_ratio", 1 if self.sr_ratio is None else self.sr_ratio, 1,
                            LIMITS["resolution"] // STAGE_STRIDES[0])
            object.__setattr__(self, "sr_ratio", sr)
        else:
            object.__setattr__(self, "head_dim", None)
            object.__setattr__(self, "sr_ratio", None)
        if self.has_local:
            k = _check_int("kernel_size", 5 if self.kernel_size is None else self.kernel_size, 1, LIMITS["kernel_size"])
            if k % 2 == 0:
                raise ConfigError("kernel_size", k, "must be odd (same padding); allowed e.g. 3, 5, 7")
            object.__setattr__(self, "kernel_size", k)
        else:
            object.__setattr__(self, "kernel_size", None)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def has_attention(self) -> bool:
        return any(k in ("lgl", "global") for k in self.blocks)

    @property
    def has_local(self) -> bool:
        return any(k in ("lgl", "local") for k in self.blocks)

    @property
    def heads(self) -> int | None:
        return None if self.head_dim is None else self.width // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the stage's MLPs, rounded down as ``int(dim * mlp_ratio)`` in the released code."""
        return int(self.width * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"width": self.width, "blocks": list(self.blocks), "mlp_ratio": self.mlp_ratio}
        if self.has_attention:
            d["head_dim"] = self.head_dim
            d["sr_ratio"] = self.sr_ratio
        if self.has_local:
            d["kernel_size"] = self.kernel_size
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str = "stage") -> "StageConfig":
        """Read a stage written by a person: ``depth`` may stand in for ``blocks`` and ``heads`` for ``head_dim``.

        With only ``depth``, blocks follow the released code: ``lgl`` where ``sr_ratio > 1``, else ``global``.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(path, d, "must be an object with keys " + ", ".join(_STAGE_KEYS))
        for key in d:
            if key not in _STAGE_KEYS:
                raise ConfigError(f"{path}.{key}", d[key], "unknown key; allowed: " + ", ".join(_STAGE_KEYS))
        if "width" not in d:
            raise ConfigError(f"{path}.width", None, "is required")
        sr = d.get("sr_ratio", 1)
        blocks = d.get("blocks")
        depth = d.get("depth")
        if depth is not None:
            depth = _check_int(f"{path}.depth", depth, 1, LIMITS["depth"])  # before [kind] * depth allocates
        if blocks is None:
            if depth is None:
                raise ConfigError(f"{path}.blocks", None, "give blocks (a list of lgl/local/global) or depth")
            kind = "lgl" if _is_int(sr) and sr > 1 else "global"
            blocks = [kind] * depth
        elif not isinstance(blocks, (list, tuple)):
            raise ConfigError(f"{path}.blocks", blocks, "must be a list of block kinds: " + ", ".join(BLOCK_KINDS))
        else:
            if len(blocks) > LIMITS["depth"]:
                raise ConfigError(f"{path}.blocks", blocks, f"at most {LIMITS['depth']} blocks per stage")
            blocks = list(blocks)
            if depth is not None and depth != len(blocks):
                raise ConfigError(f"{path}.depth", depth, f"disagrees with the {len(blocks)} blocks listed")
        head_dim = d.get("head_dim")
        heads = d.get("heads")
        if heads is not None:
            width = _check_int(f"{path}.width", d["width"], 1, LIMITS["width"])
            heads = _check_int(f"{path}.heads", heads, 1, width)
            if width % heads:
                raise ConfigError(f"{path}.heads", heads, f"must divide width {width}; allowed: {_divisors(width)}")
            if head_dim is not None:
                head_dim = _check_int(f"{path}.head_dim", head_dim, 1, width)
                if head_dim * heads != width:
                    raise ConfigError(f"{path}.heads", heads, f"disagrees with head_dim {head_dim} at width {width}")
            head_dim = width // heads
        try:
            return cls(
                width=d["width"],
                blocks=tuple(blocks),
                mlp_ratio=d.get("mlp_ratio", 4),
                head_dim=head_dim,
                sr_ratio=sr,
                kernel_size=d.get("kernel_size", 5),
            )
        except ConfigError as e:
            raise ConfigError(f"{path}.{e.field}", e.value, e.allowed) from None


@dataclass(frozen=True)
class EdgeViTConfig:
    """A whole candidate: four stages at strides 4/8/16/32, the input resolution and the class count."""

    stages: tuple[StageConfig, ...]
    resolution: int = 224
    num_classes: int = 1000
    #: A label for people (``edgevit_xxs``); not part of the architecture, not hashed.
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if len(stages) != NUM_STAGES:
            raise ConfigError("stages", len(stages), f"needs exactly {NUM_STAGES} stages (strides {STAGE_STRIDES})")
        res = self.resolution
        if not _is_int(res) or res < STAGE_STRIDES[-1] or res % STAGE_STRIDES[-1] or res > LIMITS["resolution"]:
            raise ConfigError("resolution", res, f"must be a positive multiple of 32 up to {LIMITS['resolution']} "
                                                 "(e.g. 160, 192, 224, 256)")
        if not _is_int(self.num_classes) or not 0 <= self.num_classes <= LIMITS["num_classes"]:
            raise ConfigError("num_classes", self.num_classes,
                              f"must be an integer >= 0 and <= {LIMITS['num_classes']} (0: no classifier)")
        if self.name is not None and (not isinstance(self.name, str) or len(self.name) > LIMITS["name"]):
            raise ConfigError("name", self.name, f"must be a text of at most {LIMITS['name']} characters")
        for i, st in enumerate(stages):
            if not isinstance(st, StageConfig):
                raise ConfigError(f"stages[{i}]", st, "must be a StageConfig")
            side = self.feature_side(i)
            if st.has_attention and side % st.sr_ratio:
                raise ConfigError(
                    f"stages[{i}].sr_ratio",
                    st.sr_ratio,
                    f"must divide the {side}x{side} feature map of stage {i + 1} at resolution {res}; "
                    f"allowed: {_divisors(side)}",
                )

    # ------------------------------------------------------------------ derived facts
    def feature_side(self, stage: int) -> int:
        """Side of the square feature map that stage ``stage`` (0-based) works on."""
        return self.resolution // STAGE_STRIDES[stage]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    @property
    def side_step(self) -> int:
        """Input sides this network can run at are the multiples of this: the stride of every stage,
        times the sampling ratio r of each attention stage (r must divide that stage's feature map)."""
        step = STAGE_STRIDES[-1]
        for stride, st in zip(STAGE_STRIDES, self.stages):
            if st.has_attention and st.sr_ratio:
                step = math.lcm(step, stride * int(st.sr_ratio))
        return step

    def nearest_side(self, target: float) -> int:
        """The input side nearest to ``target`` that this network runs at, never above its own
        resolution (for proxies and short training at a reduced size)."""
        k = max(1, int(round(target / self.side_step)))
        return int(min(k * self.side_step, self.resolution))

    # ------------------------------------------------------------------ serialisation
    def canonical(self) -> dict[str, Any]:
        """The canonical JSON-able form: only what changes the network, in a fixed layout."""
        return {
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.canonical()
        if self.name:
            d["name"] = self.name
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def arch_id(self) -> str:
        """Stable short id: the first 12 hex digits of the SHA-256 of the canonical JSON."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EdgeViTConfig":
        if not isinstance(d, Mapping):
            raise ConfigError("config", d, "must be a JSON object with keys " + ", ".join(_NET_KEYS))
        for key in d:
            if key not in _NET_KEYS:
                raise ConfigError(key, d[key], "unknown key; allowed: " + ", ".join(_NET_KEYS))
        stages = d.get("stages")
        if not isinstance(stages, (list, tuple)):
            raise ConfigError("stages", stages, f"must be a list of {NUM_STAGES} stage objects")
        if len(stages) != NUM_STAGES:
            raise ConfigError("stages", len(stages), f"needs exactly {NUM_STAGES} stages (strides {STAGE_STRIDES})")
        parsed = tuple(StageConfig.from_dict(s, f"stages[{i}]") for i, s in enumerate(stages))
        return cls(
            stages=parsed,
            resolution=d.get("resolution", 224),
            num_classes=d.get("num_classes", 1000),
            name=d.get("name"),
        )

    @classmethod
    def from_json(cls, text: str) -> "EdgeViTConfig":
        """Parse configuration JSON from anywhere (a store row, a Ray task): finite numbers only, with
        the same size and nesting limits as a configuration file."""
        from .files import FileFormatError, loads

        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError("json", text, f"is {len(text):,} characters, more than the {MAX_CONFIG_BYTES:,} allowed")
        try:
            data = loads(text, "json", finite=True)
        except FileFormatError as e:
            raise ConfigError("json", text, str(e).removeprefix("json: ")) from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "EdgeViTConfig":
        """A copy with network-level fields changed (``resolution``, ``num_classes``, ``name``)."""
        d = {"stages": self.stages, "resolution": self.resolution, "num_classes": self.num_classes, "name": self.name}
        d.update(changes)
        return EdgeViTConfig(**d)


def load_config(spec: str | Path) -> EdgeViTConfig:
    """A preset name (``edgevit_xxs``), a JSON file, or a run's ``best.json``: whatever a user types."""
    from .presets import PRESETS

    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    from .files import FileFormatError, read_json

    path = Path(text)
    if not path.exists():
        raise ConfigError("config", text, "is neither a preset (" + ", ".join(PRESETS) + ") nor an existing JSON file")
    if path.suffix != ".json" or not path.is_file():
        raise ConfigError("config", text, "must be a .json file or a preset name (" + ", ".join(PRESETS) + ")")
    try:
        # Bounded read: size, UTF-8, nesting depth, integer length and finite numbers are checked
        # before a configuration is even looked at.
        data = read_json(path, MAX_CONFIG_BYTES, what="config", finite=True)
    except FileFormatError as e:
        raise ConfigError("config", text, str(e).removeprefix(f"config {path}: ")) from None
    if isinstance(data, Mapping) and "config" in data and "stages" not in data:
        data = data["config"]  # a record that wraps a configuration (best.json, a store row)
    try:
        return EdgeViTConfig.from_dict(data)
    except ConfigError as e:  # every command names the file as well as the field
        raise ConfigError(f"{text}: {e.field}", e.value, e.allowed) from None
