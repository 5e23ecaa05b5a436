"""Model families: the best candidate per latency budget on one device, exported and registered with timm.

One search serves every budget: it runs under the largest budget, and each budget then takes the
most accurate candidate whose predicted latency fits it (the whole front below the largest budget
is explored, so smaller budgets are answered from the same study). ``like="edgevit"`` sets the
budgets to the predicted latencies of EdgeViT-XXS, -XS and -S on the device, which the search
seeds as trials, so every member scores at least as well as the preset it replaces.

Each member is exported to ONNX (``<run>/family/<name>.onnx``), registered with timm as
``edgevit_<device>_<budget>ms`` in this process, and written to ``family.json`` (a list of members,
each with its ``config``) and ``family.md``. :func:`register_family` registers a saved family again::

    from nas.family import register_family
    register_family("runs/s21-family/family.json")    # -> ["edgevit_s21_15ms", ...]
    model = timm.create_model("edgevit_s21_15ms", num_classes=100)
"""
from __future__ import annotations

import json
import math
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from search_space import PRESETS, EdgeViTConfig
from search_space.config import ConfigError

from search_space.files import atomic_write

from .search import Candidate, SearchConfig, SearchProgress, SearchResult, candidate_row, run_search

__all__ = ["LIKE", "FamilyMember", "FamilyResult", "member_name", "budgets_like", "run_family", "register_family",
           "register_member", "default_cfgs"]

#: ``like`` value -> the presets whose predicted latencies become the budgets.
LIKE: dict[str, tuple[str, ...]] = {"edgevit": ("edgevit_xxs", "edgevit_xs", "edgevit_s")}
#: More trials than a single-budget search: the front must be dense from the smallest budget up.
DEFAULT_FAMILY_TRIALS = 300

#: timm reads a registered model's default configuration from its module's ``default_cfgs``.
default_cfgs: dict[str, Any] = {}


@dataclass
class FamilyMember:
    name: str
    budget_ms: float
    like: str | None
    candidate: Candidate | None  # None: nothing within this budget
    fastest: Candidate | None
    onnx: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        d: dict[str, Any] = {"name": self.name, "budget_ms": self.budget_ms, "like": self.like, "feasible": c is not None}
        if c is not None:
            d.update({"arch_id": c.arch_id, "config": c.cfg.to_dict(), "score": c.score, "score_std": c.score_std,
                      "latency_ms": c.latency_ms, "latency_std_ms": c.latency_std_ms, "energy_mj": c.energy_mj,
                      "params": c.params, "macs": c.macs, "onnx": self.onnx.name if self.onnx else None})
        elif self.fastest is not None:
            d.update({"fastest_arch_id": self.fastest.arch_id, "fastest_latency_ms": self.fastest.latency_ms})
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class FamilyResult:
    run_dir: Path
    device: str
    members: list[FamilyMember]
    search: SearchResult
    registered: list[str] = field(default_factory=list)


def member_name(device: str, budget_ms: float) -> str:
    """``edgevit_<device>_<budget>ms`` as a Python identifier (``.`` becomes ``p``): ``edgevit_s21_17p5ms``."""
    return f"edgevit_{re.sub(r'[^0-9A-Za-z]', '_', device).lower()}_{f'{budget_ms:g}'.replace('.', 'p')}ms"


def budgets_like(device: str, like: str = "edgevit", predictor_root: str = "runs/predictors") -> dict[str, float]:
    """Preset name -> its predicted latency on ``device`` (rounded to 0.1 ms): the budgets of ``--like``."""
    from predictors.latency import load_device_model

    if like not in LIKE:
        raise ConfigError("like", like, "allowed: " + ", ".join(LIKE))
    model = load_device_model(device, predictor_root)
    names = LIKE[like]
    mean, _ = model.predict([PRESETS[n] for n in names])
    return {n: round(float(m), 1) for n, m in zip(names, mean)}


def run_family(device: str, budgets: Sequence[float] | None = None, like: str | None = None, *,
               n_trials: int = DEFAULT_FAMILY_TRIALS, export: bool = True,
               progress: Callable[[SearchProgress], None] | None = None, argv: Sequence[str] | None = None,
               **search: Any) -> FamilyResult:
    """Search once under the largest budget, pick the best candidate per budget, export and register each.

    ``search``: further :class:`~nas.search.SearchConfig` fields (``seed``, ``sampler``, ``workers``,
    ``ray``, ``run_dir``, ``proxies``, ``predictor_root``, ``confidence``...).
    """
    from device_farm import get_profile

    get_profile(device)  # an unknown device lists the known ones before anything else
    if (budgets is None) == (like is None):
        raise ConfigError("budgets", budgets, "give either budgets (e.g. 15,30,60) or like='edgevit', not both")
    root = search.get("predictor_root", "runs/predictors")
    likes: dict[float, str] = {}
    if like is not None:
        per_preset = budgets_like(device, like, root)
        budgets = list(per_preset.values())
        likes = {b: n for n, b in per_preset.items()}
    budgets = sorted({float(b) for b in budgets})
    if not budgets or any(not math.isfinite(b) or b <= 0 for b in budgets):
        raise ConfigError("budgets", ",".join(f"{b:g}" for b in budgets), "must be numbers > 0 (ms)")
    config = SearchConfig(device=device, budget_ms=max(budgets), n_trials=n_trials, **search)
    if config.run_dir is None:
        config = replace(config, run_dir=str(Path("runs") / f"{device}-family-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"))
    result = run_search(config, progress=progress, argv=argv)
    members = []
    for b in budgets:  # with confidence, each member's budget holds at mean + z sigma, as the search's did
        fit = [c for c in result.candidates if c.latency_bound_ms(config.z) <= b]
        best = max(fit, key=lambda c: (c.score, -c.effective_latency_ms), default=None)
        members.append(FamilyMember(member_name(device, b), b, likes.get(b), best, result.fastest))
    out = FamilyResult(result.run_dir, device, members, result)
    if export:
        from search_space.export import export_onnx

        for m in members:
            if m.candidate is not None:
                m.onnx = export_onnx(m.candidate.cfg, result.run_dir / "family" / f"{m.name}.onnx")
    entries = [m.to_dict() for m in members]
    atomic_write(result.run_dir / "family.json", json.dumps(entries, indent=2))
    atomic_write(result.run_dir / "family.md", family_markdown(out))
    out.registered = register_family(entries)
    return out


def register_member(name: str, cfg: EdgeViTConfig) -> str:
    """Register ``cfg`` with timm as ``name`` in this process (a later registration of the name replaces it)."""
    import timm
    from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

    from search_space import EdgeViT

    if not name.isidentifier():
        raise ConfigError("name", name, "must be a Python identifier (timm registers functions by name)")
    pretrained = timm.models.get_pretrained_cfg("edgevit_xxs").to_dict()  # the presets' defaults, resized
    res = cfg.resolution
    pretrained.update(num_classes=cfg.num_classes, input_size=(3, res, res), pool_size=(res // 32, res // 32),
                      architecture=name, tag=None)
    default_cfgs.update(generate_default_cfgs({name: pretrained}))
    frozen = cfg.replace(name=name)

    def create(pretrained: bool = False, **kwargs: Any):
        if pretrained:
            raise ValueError(f"pretrained=True: {name} is a searched architecture without bundled weights; load a "
                             "checkpoint with timm's checkpoint_path")
        return build_model_with_cfg(EdgeViT, name, pretrained=False, model_cfg=frozen, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"EdgeViT family member {name} (arch {cfg.arch_id}), registered by nas.family."
    setattr(sys.modules[__name__], name, create)  # timm lists it in this module's __all__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # re-registering a name after a new search is expected
        register_model(create)
    return name


def register_family(source: str | Path | Sequence[dict[str, Any]]) -> list[str]:
    """Register every member of a family (``family.json`` or its list of entries) with timm; return the names."""
    entries = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    return [register_member(e["name"], EdgeViTConfig.from_dict(e["config"])) for e in entries if e.get("config")]


def family_markdown(result: FamilyResult) -> str:
    s = result.search
    lines = [f"# Family for {result.device} ({result.run_dir.name})\n",
             f"- latency calibration: {s.calibration}", f"- {s.accuracy}",
             f"- one search: {s.n_trials} trials, {len(s.candidates)} distinct candidates, sampler {s.config.sampler} "
             f"(seed {s.config.seed}); details in report.md\n",
             "| name | budget ms | like | id | score | latency ms | params M | GMACs | ONNX |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in result.members:
        if m.candidate is None:
            f = m.fastest
            lines.append(f"| {m.name} | {m.budget_ms:g} | {m.like or ''} | none within budget"
                         + (f" (fastest: {f.arch_id} at {f.latency_ms:.2f} ms)" if f else "") + " | | | | | |")
            continue
        r = candidate_row(m.candidate)
        lines.append(f"| {m.name} | {m.budget_ms:g} | {m.like or ''} | {r['id']} | {r['score']} | {r['latency ms']} | "
                     f"{r['params M']} | {r['GMACs']} | {m.onnx.name if m.onnx else ''} |")
    lines.append("\nRegister them in Python: `from nas.family import register_family; "
                 "register_family('family.json')`, then `timm.create_model(name)`.")
    return "\n".join(lines) + "\n"
