"""The search: the most accurate EdgeViTs within a latency (and energy) budget on one device.

One driver process owns the Optuna study and talks to it by ask/tell; scoring runs elsewhere.

- **Objectives**: the accuracy score up (:func:`predictors.accuracy.load_accuracy_model`), predicted
  latency down (:func:`predictors.device.load_device_model`), optionally predicted energy down.
  Budgets are *constraints*, not objectives: each trial stores its violations (predicted minus
  budget) in the user attribute ``constraints`` and carries them as Optuna constraints
  (``Trial.set_constraint`` on Optuna >= 5; a ``constraints_func`` reading the user attribute
  before that), so infeasible candidates are ranked by how far they miss (constrained domination).
- **Samplers**: NSGA-II (default), TPE (multivariate, grouped, constant liar), GP, random; the
  ``seed`` seeds the sampler.
- **Scale-out**: the driver asks ``workers`` trials, scores the distinct new candidates among them
  as Ray tasks (each worker process loads the models once, from one object in the object store),
  then tells every trial *in ask order*. Completion order therefore never changes a result: the same
  seed and the same ``workers`` give the same trials, with Ray or without. The driver is the only
  writer of the storage, which keeps SQLite safe; a PostgreSQL/MySQL URL works the same way and can
  be shared by several drivers (``study_name``).
- **Duplicates**: a candidate is its ``arch_id``. An asked trial whose candidate was scored before
  (earlier in the run, earlier in the same batch, or before a resume) is told the stored values and
  marked ``duplicate_of``; it is never scored again.
- **Resume**: the run directory holds the study and the settings (``command.json``). Resuming fails
  the trials a kill left ``RUNNING`` (marked ``interrupted``), enqueues their parameters again, and
  continues until ``n_trials`` trials have finished; interrupted trials do not count.
- **Measurement in the loop** (``measure_top_k``): the best feasible candidates are measured on the
  device through the farm and stored. The latency model is then *refitted*: a device whose model
  was trained on its own measurements (``kind == "measured"``, e.g. ``host``) is retrained on the
  store, which now holds the new points where they matter most; a device whose model rests on
  other data (nn-Meter blocks, few-shot) gets a run-level scale correction, the geometric mean of
  measured / predicted over the measured candidates, because a handful of points supports one
  number and nothing more (``nas farm calibrate`` builds a full model). Every candidate's latency is
  re-predicted with the refitted model; a measured latency overrides any prediction, so a winner
  whose measured latency breaks the budget is never reported as the winner; an unmeasured new
  winner is measured in turn (at most ``measure_top_k`` extra measurements).

Outputs in the run directory (each written atomically; all regenerated at the end and on resume):
``command.json``, ``study.db``, ``candidates.csv``/``.json``, ``pareto.json``, ``best.json``,
``pareto.png``, ``report.md``, and ``measured.json`` when measuring.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from search_space import DEFAULT_SPACE, PRESETS, EdgeViTConfig, cost
from search_space.config import ConfigError

__all__ = [
    "OBJECTIVES", "SAMPLERS", "DEFAULT_TRIALS", "SearchConfig", "Candidate", "SearchProgress", "SearchResult",
    "Scorer", "run_search", "resume_search", "pareto_mask", "hypervolume_2d", "new_run_id",
    "write_outputs", "plot_pareto", "report_markdown", "candidate_row", "atomic_write",
]

#: Objective name -> Optuna direction.
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "latency": "minimize", "energy": "minimize"}
SAMPLERS: tuple[str, ...] = ("nsga2", "tpe", "gp", "random")
#: 200 trials: 92 s for ``nas search --device s21 --budget-ms 30`` with the default proxy score on this
#: project's 2-core machine (bench/search_overhead.py), about 120 distinct feasible candidates.
DEFAULT_TRIALS = 200
STUDY_DB = "study.db"


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved in ``command.json`` so that a resume repeats it.

    ``workers``: trials asked per round and scored in parallel (``None``: the Ray cluster's CPUs, 1
    without Ray). ``storage``: an Optuna storage URL; ``None`` is ``sqlite:///<run_dir>/study.db``.
    ``proxies``: the accuracy score's proxies (``None``: the default set; ``("params",)`` is an instant
    analytic score for quick runs). ``seed_presets``: enqueue EdgeViT-XXS/XS/S as the first trials.
    """

    device: str
    budget_ms: float | None = None
    budget_mj: float | None = None
    objectives: tuple[str, ...] = ("accuracy", "latency")
    sampler: str = "nsga2"
    n_trials: int = DEFAULT_TRIALS
    seed: int = 0
    workers: int | None = None
    ray: bool = True
    ray_address: str | None = None
    storage: str | None = None
    study_name: str | None = None
    run_dir: str | None = None
    measure_top_k: int = 0
    proxies: tuple[str, ...] | None = None
    dataset: str = "imagenet-1k"
    seed_presets: bool = True
    population_size: int | None = None
    predictor_root: str = "runs/predictors"
    store: str | None = None

    def validate(self) -> "SearchConfig":
        """Raise :class:`ConfigError` (or ``ProfileError`` for an unknown device) naming the bad field."""
        from device_farm import get_profile

        get_profile(self.device)
        for name in ("budget_ms", "budget_mj"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(name, v, "must be a number > 0")
        objs = tuple(self.objectives)
        bad = [o for o in objs if o not in OBJECTIVES]
        if bad or len(set(objs)) != len(objs) or "accuracy" not in objs or "latency" not in objs:
            raise ConfigError("objectives", ",".join(objs), "allowed: accuracy,latency or accuracy,latency,energy")
        if self.sampler not in SAMPLERS:
            raise ConfigError("sampler", self.sampler, "allowed: " + ", ".join(SAMPLERS))
        for name, lo in (("n_trials", 1), ("measure_top_k", 0), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ConfigError(name, v, f"must be an integer >= {lo}")
        for name in ("workers", "population_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (1 if name == "workers" else 2)):
                raise ConfigError(name, v, f"must be an integer >= {1 if name == 'workers' else 2}")
        if self.storage and self.storage.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
            raise ConfigError("storage", self.storage, "must be an Optuna RDB URL: sqlite:///..., postgresql://... or "
                              "mysql://...")
        if self.ray_address and not self.ray:
            raise ConfigError("ray_address", self.ray_address, "needs Ray scoring (ray=True)")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["proxies"] = list(self.proxies) if self.proxies is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["objectives"] = tuple(d.get("objectives", ("accuracy", "latency")))
        if d.get("proxies") is not None:
            d["proxies"] = tuple(d["proxies"])
        return cls(**d)


def new_run_id(config: SearchConfig, now: datetime | None = None) -> str:
    """``<device>-<budget>ms-<UTC time>``, e.g. ``s21-30ms-20261125-101500``."""
    now = now or datetime.now(timezone.utc)
    budget = f"-{config.budget_ms:g}ms" if config.budget_ms else ""
    energy = f"-{config.budget_mj:g}mJ" if config.budget_mj else ""
    return f"{config.device}{budget}{energy}-{now:%Y%m%d-%H%M%S}"


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class Scorer:
    """What scores a candidate: the accuracy model, the device's latency model and, if known, its energy model.

    Picklable: the driver puts one into Ray's object store and each worker process keeps its copy.
    """

    accuracy: Any
    latency: Any
    energy: Any = None

    def score(self, cfgs: Sequence[EdgeViTConfig]) -> list[dict[str, Any]]:
        """One record per candidate: score, latency and energy with their std, params, MACs (or ``error``)."""
        cfgs = list(cfgs)
        if not cfgs:
            return []
        try:
            return self._score(cfgs)
        except Exception:  # one bad candidate must not sink the others: score them one by one
            if len(cfgs) == 1:
                return [{"error": _error_line()}]
            return [self.score([c])[0] for c in cfgs]

    def _score(self, cfgs: list[EdgeViTConfig]) -> list[dict[str, Any]]:
        acc, acc_std = self.accuracy.estimate(cfgs)
        lat, lat_std = self.latency.predict(cfgs)
        if self.energy is not None:
            en, en_std = self.energy.predict_with_std(cfgs)
        else:
            en = en_std = np.full(len(cfgs), np.nan)
        out = []
        for i, c in enumerate(cfgs):
            k = cost(c)
            rec = {"score": float(acc[i]), "score_std": float(acc_std[i]), "latency_ms": float(lat[i]),
                   "latency_std_ms": float(lat_std[i]), "energy_mj": float(en[i]), "energy_std_mj": float(en_std[i]),
                   "params": int(k.params), "macs": int(k.macs)}
            if not (math.isfinite(rec["score"]) and math.isfinite(rec["latency_ms"])):
                rec = {"error": f"score {rec['score']}, latency {rec['latency_ms']}: not finite"}
            out.append(rec)
        return out


def _error_line() -> str:
    e = sys.exc_info()[1]
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


_WORKER_SCORERS: dict[str, Scorer] = {}


def _score_in_worker(key: str, holder: list, cfg_dicts: list[dict]) -> list[dict[str, Any]]:
    # A Ray task. ``holder`` wraps the scorer's ObjectRef so Ray does not resolve it per call: each
    # worker process fetches and unpickles it once, then reuses it.
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        import ray

        _WORKER_SCORERS.clear()  # one search at a time per worker: drop the previous search's models
        scorer = _WORKER_SCORERS[key] = ray.get(holder[0])
    return scorer.score([EdgeViTConfig.from_dict(d) for d in cfg_dicts])


class _LocalPool:
    """Scores in the driver process (``ray=False``): the same batches, the same results."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def map(self, chunks: list[list[EdgeViTConfig]]) -> list[list[dict[str, Any]]]:
        return [self.scorer.score(c) for c in chunks]


class _RayPool:
    """Scores each chunk as a Ray task (one CPU each); results come back in submission order."""

    def __init__(self, scorer: Scorer, key: str):
        import ray

        self.ray = ray
        self.key = key
        self.holder = [ray.put(scorer)]
        self.task = ray.remote(num_cpus=1, max_retries=1)(_score_in_worker)

    def map(self, chunks: list[list[EdgeViTConfig]]) -> list[list[dict[str, Any]]]:
        refs = [self.task.remote(self.key, self.holder, [c.to_dict() for c in chunk]) for chunk in chunks]
        out = []
        for ref, chunk in zip(refs, chunks):
            try:
                out.append(self.ray.get(ref))
            except Exception:  # a crashed worker: its candidates fail, the search goes on
                out.append([{"error": _error_line()}] * len(chunk))
        return out


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Candidate:
    """One distinct architecture the search scored (the first trial that proposed it)."""

    arch_id: str
    trial: int
    cfg: EdgeViTConfig
    score: float
    score_std: float
    latency_ms: float
    latency_std_ms: float
    energy_mj: float | None
    energy_std_mj: float | None
    params: int
    macs: int
    n_trials: int = 1
    preset: str | None = None
    feasible: bool = True
    violation: float = 0.0
    pareto: bool = False
    chosen: bool = False
    measured_ms: float | None = None
    measured_status: str | None = None
    latency_refit_ms: float | None = None

    @property
    def effective_latency_ms(self) -> float:
        """Measured latency where a clean measurement exists, else the (refitted) prediction."""
        if self.measured_ms is not None and self.measured_status == "ok":
            return self.measured_ms
        return self.latency_refit_ms if self.latency_refit_ms is not None else self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cfg"}
        d["config"] = self.cfg.to_dict()
        return {k: _jsonable(v) for k, v in d.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _jsonable(v.item())
    return v


@dataclass
class SearchProgress:
    """What a progress bar shows; ``phase`` is ``models``, ``search``, ``measure`` or ``outputs``."""

    phase: str
    done: int = 0
    total: int = 0
    unique: int = 0
    feasible: int = 0
    best: tuple[str, float, float] | None = None  # (arch_id, score, latency ms) of the best feasible so far
    message: str = ""


@dataclass
class SearchResult:
    run_dir: Path
    config: SearchConfig
    candidates: list[Candidate]
    pareto: list[Candidate]
    best: Candidate | None
    fastest: Candidate | None
    presets: dict[str, Candidate]
    calibration: str
    accuracy: str
    accuracy_unit: str
    energy: str
    n_trials: int
    measured: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates if c.feasible]


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``points`` (n x m, every column minimised); duplicates all stay."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(pts <= pts[i], axis=1) & np.any(pts < pts[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def hypervolume_2d(points: np.ndarray, reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (n x 2, both minimised) and bounded by ``reference``."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    pts = pts[np.all(pts < np.asarray(reference), axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[pareto_mask(pts)]
    pts = pts[np.argsort(pts[:, 0])]
    area, prev_y = 0.0, float(reference[1])
    for x, y in pts:
        if y < prev_y:
            area += (reference[0] - x) * (prev_y - y)
            prev_y = y
    return float(area)


# ---------------------------------------------------------------------------------------------- devices
def _energy_model(device: str, root: str):
    from predictors.trained import default_path, load

    path = default_path(device, "energy", root)
    if not path.exists():
        return None, (f"energy unknown: no energy predictor for {device} ({path}); 'nas predictor train --device "
                      f"{device} --target energy' explains what provides one")
    p = load(path)
    return p, f"energy: {p.n_train} measurements on {device}, method {p.method}"


# ---------------------------------------------------------------------------------------------- entry points
def run_search(config: SearchConfig, progress: Callable[[SearchProgress], None] | None = None,
               argv: Sequence[str] | None = None) -> SearchResult:
    """Start a search in ``config.run_dir`` (default ``runs/<run-id>``) and run it to the end."""
    config.validate()
    run_dir = Path(config.run_dir) if config.run_dir else Path("runs") / new_run_id(config)
    if (run_dir / "command.json").exists():
        raise ConfigError("run_dir", str(run_dir), "already holds a search; resume it with 'nas search --resume "
                          f"{run_dir}' or choose another --run-id")
    config = replace(config, run_dir=str(run_dir), study_name=config.study_name or run_dir.name)
    return _Search(config, run_dir, progress).run(fresh=True, argv=argv)


def resume_search(run_dir: str | os.PathLike, progress: Callable[[SearchProgress], None] | None = None,
                  n_trials: int | None = None, workers: int | None = None,
                  argv: Sequence[str] | None = None) -> SearchResult:
    """Continue the search in ``run_dir`` with its stored settings; ``n_trials``/``workers`` may change."""
    run_dir = Path(run_dir)
    path = run_dir / "command.json"
    if not path.is_file():
        raise ConfigError("resume", str(run_dir), "is not a search run directory (no command.json)")
    config = SearchConfig.from_dict(json.loads(path.read_text())["config"])
    changes: dict[str, Any] = {"run_dir": str(run_dir)}
    if n_trials is not None:
        changes["n_trials"] = n_trials
    if workers is not None:
        changes["workers"] = workers
    config = replace(config, **changes).validate()
    return _Search(config, run_dir, progress).run(fresh=False, argv=argv)


# ---------------------------------------------------------------------------------------------- the driver
def _constraints_of(trial) -> list[float]:
    return list(trial.user_attrs.get("constraints", []))


def _has_set_constraint() -> bool:
    from optuna.trial import Trial

    return hasattr(Trial, "set_constraint")


_HAS_SET_CONSTRAINT = _has_set_constraint()


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("edgevit-nas", "torch", "optuna", "ray", "onnxruntime", "numpy", "timm", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _machine() -> dict[str, Any]:
    from device_farm.measure import cpu_model

    return {"hostname": platform.node(), "platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count()}


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a temporary file beside it and a rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)


class _RunLock:
    """An exclusive lock on the run directory (released by the OS even on kill -9)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "_RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError("run_dir", str(self.path.parent), "another nas search is running in it") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)


class _Search:
    def __init__(self, config: SearchConfig, run_dir: Path, progress: Callable[[SearchProgress], None] | None):
        self.config = config
        self.run_dir = run_dir
        self.progress = progress or (lambda p: None)
        self.run_id = run_dir.name
        self.timings = {"ask": 0.0, "score": 0.0, "tell": 0.0, "search": 0.0, "models": 0.0, "measure": 0.0}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def _storage_url(self) -> str:
        if self.config.storage:
            return self.config.storage
        return f"sqlite:///{(self.run_dir / STUDY_DB).resolve()}"

    def _load_models(self) -> None:
        from predictors.accuracy import load_accuracy_model
        from predictors.device import load_device_model
        from predictors.trained import NoDataError

        cfg = self.config
        t0 = time.perf_counter()
        self.progress(SearchProgress("models", message=f"loading the latency model of {cfg.device}"))
        self.latency = load_device_model(cfg.device, cfg.predictor_root)
        self.energy, self.energy_line = _energy_model(cfg.device, cfg.predictor_root)
        if self.energy is None and ("energy" in cfg.objectives or cfg.budget_mj is not None):
            what = "--budget-mj" if cfg.budget_mj is not None else "the energy objective"
            raise NoDataError(f"{what} needs an energy model for {cfg.device}: {self.energy_line.split(': ', 1)[1]}")
        self.progress(SearchProgress("models", message="loading the accuracy model"))
        self.accuracy = load_accuracy_model(cfg.dataset, cfg.proxies, root=cfg.predictor_root)
        self.scorer = Scorer(self.accuracy, self.latency, self.energy)
        self.timings["models"] = time.perf_counter() - t0

    def _sampler(self, n_existing: int):
        import optuna

        cfg = self.config
        # A resumed run reseeds from (seed, trials so far): the same seed again would replay the first
        # draws and propose only duplicates; this stays deterministic for a given interruption point.
        seed = cfg.seed if n_existing == 0 else int(np.random.SeedSequence([cfg.seed, n_existing]).generate_state(1)[0])
        # Optuna >= 5 reads constraints that trials carry (``Trial.set_constraint``, what the driver
        # calls); older versions need a ``constraints_func``, which reads the same user attribute.
        constrained = cfg.budget_ms is not None or cfg.budget_mj is not None
        cons = _constraints_of if constrained and not _HAS_SET_CONSTRAINT else None
        if cfg.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=self.population, seed=seed, constraints_func=cons)
        if cfg.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constraints_func=cons, multivariate=True, group=True,
                                              constant_liar=True)
        if cfg.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, constraints_func=cons, warn_independent_sampling=False)
        return optuna.samplers.RandomSampler(seed=seed)

    def _open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        cfg = self.config
        directions = [OBJECTIVES[o] for o in cfg.objectives]
        storage = optuna.storages.RDBStorage(self._storage_url(), engine_kwargs=(
            {"connect_args": {"timeout": 60}} if self._storage_url().startswith("sqlite") else {}))
        n_existing = 0
        try:
            existing = optuna.load_study(study_name=cfg.study_name, storage=storage)
            n_existing = len(existing.get_trials(deepcopy=False))
        except KeyError:
            pass
        study = optuna.create_study(study_name=cfg.study_name, storage=storage, directions=directions,
                                    sampler=self._sampler(n_existing), load_if_exists=True)
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError("study_name", cfg.study_name, f"exists in {cfg.storage} with other objectives")
        return study

    def _write_command(self, fresh: bool, argv: Sequence[str] | None) -> None:
        path = self.run_dir / "command.json"
        entry = {"argv": list(argv) if argv is not None else list(sys.argv), "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "versions": _versions(), "machine": _machine(), "cwd": os.getcwd()}
        if fresh:
            doc = {**entry, "config": self.config.to_dict(), "resumes": []}
        else:
            doc = json.loads(path.read_text())
            doc["resumes"].append({**entry, "n_trials": self.config.n_trials, "workers": self.config.workers})
            doc["config"]["n_trials"] = self.config.n_trials
            doc["config"]["workers"] = self.config.workers
        doc["accuracy"] = doc.get("accuracy") or self.accuracy.describe()
        if doc["accuracy"] != self.accuracy.describe():
            self.notes.append(f"the accuracy model changed since the run started: now '{self.accuracy.describe()}', "
                              f"was '{doc['accuracy']}'; earlier scores were not recomputed")
        doc["calibration"] = self.latency.calibration
        atomic_write(path, json.dumps(doc, indent=2))

    # ------------------------------------------------------------------ the loop
    def run(self, fresh: bool, argv: Sequence[str] | None) -> SearchResult:
        # Everything that can refuse the run comes before the run directory is created.
        self._resolve_parallelism()
        if self.config.measure_top_k > 0:
            from device_farm import get_profile
            from device_farm.measure import reachable

            ok, why = reachable(get_profile(self.config.device))
            if not ok:
                raise ConfigError("measure_top_k", self.config.measure_top_k,
                                  f"needs a reachable device; {self.config.device} is not: {why}")
        self._load_models()
        key = f"{self.run_dir.resolve()}:{os.getpid()}:{time.time_ns()}"
        self.pool = _RayPool(self.scorer, key) if self.config.ray else _LocalPool(self.scorer)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _RunLock(self.run_dir):
            self._write_command(fresh, argv)
            study = self._open_study()
            if fresh and self.config.seed_presets and not study.trials:
                for name, p in PRESETS.items():
                    if DEFAULT_SPACE.contains(p):
                        study.enqueue_trial(DEFAULT_SPACE.params_of(p), user_attrs={"preset": name})
            self._recover(study)
            self._loop(study)
            return self._finish(study)

    def _resolve_parallelism(self) -> None:
        cfg = self.config
        if cfg.ray:
            from device_farm.ray_farm import init_ray

            init_ray(cfg.ray_address, local_devices=("host",))
            import ray

            cpus = int(ray.cluster_resources().get("CPU", 1))
        else:
            cpus = 1
        workers = cfg.workers or max(1, cpus)
        self.population = cfg.population_size or max(8, min(50, cfg.n_trials // 10))
        self.config = replace(cfg, workers=workers, population_size=self.population)

    def _recover(self, study) -> None:
        """Fail the trials a kill left RUNNING (they are this run's: the run lock is ours) and redo them."""
        from optuna.trial import TrialState

        run = self.run_id
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("run", run) != run:
                continue  # another driver's trial in a shared study
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study.tell(t.number, state=TrialState.FAIL)
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"redo_of": t.number})
        self.known: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        self._refresh_known(study)

    def _refresh_known(self, study) -> None:
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            aid = t.user_attrs.get("arch_id")
            if not aid:
                continue
            if t.state == TrialState.COMPLETE and aid not in self.known:
                self.known[aid] = {"result": t.user_attrs["result"], "constraints": t.user_attrs.get("constraints", []),
                                   "trial": t.number}
            elif t.state == TrialState.FAIL and "error" in t.user_attrs:
                self.failed.setdefault(aid, t.user_attrs["error"])

    @staticmethod
    def _finished(study) -> int:
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        return sum(1 for t in done if not t.user_attrs.get("interrupted"))

    def _constraint_names(self) -> list[str]:
        cfg = self.config
        return [n for n, b in (("latency_ms", cfg.budget_ms), ("energy_mj", cfg.budget_mj)) if b is not None]

    def _constraints(self, r: dict[str, Any]) -> list[float]:
        cfg = self.config
        out = []
        if cfg.budget_ms is not None:
            out.append(r["latency_ms"] - cfg.budget_ms)
        if cfg.budget_mj is not None:
            out.append(r["energy_mj"] - cfg.budget_mj)
        return out

    def _values(self, r: dict[str, Any]) -> list[float]:
        key = {"accuracy": "score", "latency": "latency_ms", "energy": "energy_mj"}
        return [r[key[o]] for o in self.config.objectives]

    def _loop(self, study) -> None:
        from optuna.trial import TrialState

        cfg = self.config
        done = self._finished(study)
        t_start = time.perf_counter()
        shared = cfg.storage is not None
        feas = [(a, k) for a, k in self.known.items() if all(x <= 0 for x in k["constraints"])]
        feasible = len(feas)
        best: tuple[str, float, float] | None = None
        if feas:  # a resumed run starts from what it had
            a, k = max(feas, key=lambda ak: ak[1]["result"]["score"])
            best = (a, k["result"]["score"], k["result"]["latency_ms"])
        self.progress(SearchProgress("search", done, cfg.n_trials, len(self.known), feasible, best))
        while done < cfg.n_trials:
            if shared:  # other drivers write to the same study
                self._refresh_known(study)
                done = self._finished(study)
                if done >= cfg.n_trials:
                    break
            k = min(cfg.workers, cfg.n_trials - done)
            t0 = time.perf_counter()
            asked: list[tuple[Any, EdgeViTConfig | None]] = []
            try:
                for _ in range(k):
                    trial = study.ask()
                    trial.set_user_attr("run", self.run_id)
                    try:
                        c = DEFAULT_SPACE.sample(trial)
                    except ConfigError as e:  # cannot happen in the default space; never fatal
                        trial.set_user_attr("error", str(e))
                        study.tell(trial, state=TrialState.FAIL)
                        continue
                    trial.set_user_attr("arch_id", c.arch_id)
                    asked.append((trial, c))
                t1 = time.perf_counter()
                new: dict[str, EdgeViTConfig] = {}
                for _, c in asked:
                    if c.arch_id not in self.known and c.arch_id not in self.failed:
                        new.setdefault(c.arch_id, c)
                todo = list(new.values())
                n_chunks = min(cfg.workers, len(todo))
                chunks = [todo[i::n_chunks] for i in range(n_chunks)] if todo else []
                results: dict[str, dict[str, Any]] = {}
                for chunk, recs in zip(chunks, self.pool.map(chunks)):
                    for c, r in zip(chunk, recs):
                        results[c.arch_id] = r
                t2 = time.perf_counter()
                for trial, c in asked:  # in ask order, whatever order the tasks finished in
                    aid = c.arch_id
                    if aid in self.known:
                        k_ = self.known[aid]
                        trial.set_user_attr("duplicate_of", k_["trial"])
                        r, cons = k_["result"], k_["constraints"]
                    elif aid in self.failed or "error" in results[aid]:
                        err = self.failed.get(aid) or results[aid]["error"]
                        self.failed[aid] = err
                        trial.set_user_attr("error", err)
                        study.tell(trial, state=TrialState.FAIL)
                        continue
                    else:
                        r, cons = results[aid], self._constraints(results[aid])
                        trial.set_user_attr("config", c.to_dict())
                        self.known[aid] = {"result": r, "constraints": cons, "trial": trial.number}
                        if all(x <= 0 for x in cons):
                            feasible += 1
                            if best is None or r["score"] > best[1]:
                                best = (aid, r["score"], r["latency_ms"])
                    trial.set_user_attr("result", r)
                    trial.set_user_attr("constraints", cons)
                    if _HAS_SET_CONSTRAINT:
                        for name, v in zip(self._constraint_names(), cons):
                            trial.set_constraint(name, v)
                    study.tell(trial, self._values(r))
            except BaseException:
                # Ctrl-C or an error mid-batch: the asked, untold trials are failed and enqueued again.
                for trial, _ in asked:
                    t = study._storage.get_trial(trial._trial_id)
                    if t.state == TrialState.RUNNING:
                        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                        study.tell(t.number, state=TrialState.FAIL)
                        study.enqueue_trial(t.params, user_attrs={"redo_of": t.number})
                raise
            t3 = time.perf_counter()
            self.timings["ask"] += t1 - t0
            self.timings["score"] += t2 - t1
            self.timings["tell"] += t3 - t2
            done += k
            self.progress(SearchProgress("search", min(done, cfg.n_trials), cfg.n_trials, len(self.known), feasible, best))
        self.timings["search"] += time.perf_counter() - t_start

    # ------------------------------------------------------------------ results
    def _candidates(self, study) -> list[Candidate]:
        from optuna.trial import TrialState

        out: dict[str, Candidate] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            aid = t.user_attrs.get("arch_id")
            if aid is None or "result" not in t.user_attrs:
                continue
            if aid in out:
                out[aid].n_trials += 1
                out[aid].preset = out[aid].preset or t.user_attrs.get("preset")
                continue
            cfg_d = t.user_attrs.get("config")
            c = EdgeViTConfig.from_dict(cfg_d) if cfg_d else DEFAULT_SPACE.sample(_FixedParams(t.params))
            out[aid] = _candidate(aid, t.number, c, t.user_attrs["result"], t.user_attrs.get("constraints", []),
                                  t.user_attrs.get("preset"))
        return list(out.values())

    def _judge(self, cands: list[Candidate]) -> tuple[list[Candidate], Candidate | None, Candidate | None]:
        """Feasibility (on the effective latency), the Pareto front of the feasible, the winner, the fastest."""
        cfg = self.config
        for c in cands:
            self._feasibility(c)
            c.pareto = c.chosen = False
        feas = [c for c in cands if c.feasible]
        if feas:
            cols = [[-c.score for c in feas], [c.effective_latency_ms for c in feas]]
            if "energy" in cfg.objectives:
                cols.append([c.energy_mj if c.energy_mj is not None else np.inf for c in feas])
            for c, on in zip(feas, pareto_mask(np.array(cols).T)):
                c.pareto = bool(on)
        front = sorted([c for c in feas if c.pareto], key=lambda c: c.effective_latency_ms)
        best = max(front, key=lambda c: (c.score, -c.effective_latency_ms), default=None)
        if best is not None:
            best.chosen = True
        fastest = min(cands, key=lambda c: c.effective_latency_ms, default=None)
        return front, best, fastest

    def _feasibility(self, c: Candidate) -> None:
        """``violation``: the relative excess over each budget, summed; feasible when zero."""
        cfg = self.config
        v = 0.0
        if cfg.budget_ms is not None:
            v += max(0.0, c.effective_latency_ms - cfg.budget_ms) / cfg.budget_ms
        if cfg.budget_mj is not None and c.energy_mj is not None:
            v += max(0.0, c.energy_mj - cfg.budget_mj) / cfg.budget_mj
        c.violation, c.feasible = v, v <= 0

    def _presets(self, cands: list[Candidate]) -> dict[str, Candidate]:
        by_id = {c.arch_id: c for c in cands}
        out, missing = {}, []
        for name, p in PRESETS.items():
            if p.arch_id in by_id:
                out[name] = by_id[p.arch_id]
            else:
                missing.append((name, p))
        if missing:  # not seeded: score them here (the plot and the report compare against them)
            for (name, p), r in zip(missing, self.scorer.score([p for _, p in missing])):
                if "error" not in r:
                    out[name] = _candidate(p.arch_id, -1, p, r, self._constraints(r), name)
        for name, c in out.items():
            c.preset = name
        return out

    def _finish(self, study) -> SearchResult:
        cands = self._candidates(study)
        front, best, fastest = self._judge(cands)
        measured: list[dict[str, Any]] = []
        if self.config.measure_top_k > 0 and cands:
            t0 = time.perf_counter()
            measured = self._measure(cands)
            front, best, fastest = self._judge(cands)
            self.timings["measure"] = time.perf_counter() - t0
        presets = self._presets(cands)
        for c in presets.values():
            if c.trial < 0:
                self._feasibility(c)
        result = SearchResult(self.run_dir, self.config, cands, front, best, fastest, presets, self.latency.calibration,
                              self.accuracy.describe(), getattr(self.accuracy, "unit", "score"), self.energy_line,
                              self._finished(study), measured, dict(self.timings), self.notes)
        self.progress(SearchProgress("outputs", message=f"writing {self.run_dir}"))
        write_outputs(result)
        return result

    # ------------------------------------------------------------------ measurement in the loop
    def _measure(self, cands: list[Candidate]) -> list[dict[str, Any]]:
        from device_farm import DEFAULT_STORE, MeasurementStore, get_profile
        from device_farm.measure import Farm, reachable

        cfg = self.config
        profile = get_profile(cfg.device)
        ok, why = reachable(profile)
        if not ok:
            self.notes.append(f"not measured: {cfg.device} is not reachable ({why})")
            return []
        path = self.run_dir / "measured.json"
        done: dict[str, dict[str, Any]] = {d["arch_id"]: d for d in json.loads(path.read_text())} if path.exists() else {}
        farm = Farm(MeasurementStore(cfg.store or DEFAULT_STORE))
        by_id = {c.arch_id: c for c in cands}

        def measure(batch: list[Candidate]) -> None:
            todo = [c for c in batch if c.arch_id not in done]
            total = len(done) + len(todo)
            if todo:
                self.progress(SearchProgress("measure", len(done), total, message=f"measuring {len(todo)} on {cfg.device}"))
            for m in self._measure_many(farm, [c.cfg for c in todo], profile):
                done[m.arch_id] = {"arch_id": m.arch_id, "status": m.status, "median_ms": m.median_ms,
                                   "ci95_rel": m.ci95_rel, "energy_mj": m.energy_mj, "error": m.error,
                                   "predicted_ms": by_id[m.arch_id].latency_ms,
                                   "predicted_std_ms": by_id[m.arch_id].latency_std_ms}
                atomic_write(path, json.dumps(list(done.values()), indent=2))
                self.progress(SearchProgress("measure", len(done), total, message=f"{m.arch_id} {m.status}"))
            self._apply_measurements(cands, done)

        feasible = sorted([c for c in cands if c.feasible], key=lambda c: -c.score)
        first = feasible[:cfg.measure_top_k] or sorted(cands, key=lambda c: c.latency_ms)[:1]
        self._apply_measurements(cands, done)
        measure(first)
        self._refit(cands, done)
        for _ in range(cfg.measure_top_k):  # a new, unmeasured winner is measured in turn
            _, best, _ = self._judge(cands)
            if best is None or best.arch_id in done:
                break
            measure([best])
        out = [dict(d, refit_ms=_jsonable(by_id[a].latency_refit_ms) if a in by_id else None) for a, d in done.items()]
        atomic_write(path, json.dumps(out, indent=2))
        return out

    def _measure_many(self, farm, cfgs: list[EdgeViTConfig], profile):
        from device_farm.ray_farm import measure_remote, reachable_on_cluster

        if self.config.ray and reachable_on_cluster(profile.id):
            yield from measure_remote(farm, cfgs, profile)
        else:
            for c in cfgs:
                yield farm.measure(c, profile)

    @staticmethod
    def _apply_measurements(cands: list[Candidate], done: dict[str, dict[str, Any]]) -> None:
        for c in cands:
            d = done.get(c.arch_id)
            if d:
                c.measured_ms, c.measured_status = d["median_ms"], d["status"]

    def _refit(self, cands: list[Candidate], done: dict[str, dict[str, Any]]) -> None:
        """Refit the latency model on the new measurements and re-predict every candidate (module docstring)."""
        from device_farm import DEFAULT_STORE, MeasurementStore
        from predictors.device import load_device_model
        from predictors.trained import NoDataError, default_path, train

        cfg = self.config
        ok = [(d["median_ms"], d["predicted_ms"]) for d in done.values() if d["status"] == "ok" and d["median_ms"]]
        if not ok:
            self.notes.append("no clean measurement: the predictions stand unchanged")
            return
        if self.latency.kind == "measured":
            try:
                p = train(MeasurementStore(cfg.store or DEFAULT_STORE), cfg.device)
            except NoDataError as e:
                self.notes.append(f"latency model not retrained: {e}")
                return
            p.save(default_path(cfg.device, "latency", cfg.predictor_root))
            self.latency = load_device_model(cfg.device, cfg.predictor_root)
            mean, _ = self.latency.predict([c.cfg for c in cands])
            self.notes.append(f"latency model retrained on {p.n_train} measurements of {cfg.device} (method {p.method}) "
                              f"including the {len(ok)} new ones, and every candidate re-predicted")
        else:
            ratio = float(np.exp(np.mean([np.log(m / p) for m, p in ok])))
            mean = np.array([c.latency_ms * ratio for c in cands])
            atomic_write(self.run_dir / "correction.json", json.dumps(
                {"device": cfg.device, "scale": ratio, "n": len(ok), "model": self.latency.kind}, indent=2))
            self.notes.append(f"{cfg.device}'s {self.latency.kind} model corrected by x{ratio:.3f} (geometric mean of "
                              f"measured/predicted over {len(ok)} measurement(s)); 'nas farm calibrate --device "
                              f"{cfg.device}' fits a full model")
        for c, m in zip(cands, mean):
            c.latency_refit_ms = float(m)


class _FixedParams:
    """A stand-in trial replaying stored parameters (for trials stored without their config)."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params[name]


def _candidate(aid: str, number: int, c: EdgeViTConfig, r: dict[str, Any], cons: Sequence[float],
               preset: str | None = None) -> Candidate:
    energy = r.get("energy_mj")
    known = energy is not None and math.isfinite(energy)
    return Candidate(aid, number, c, r["score"], r["score_std"], r["latency_ms"], r["latency_std_ms"],
                     energy if known else None, r.get("energy_std_mj") if known else None, r["params"], r["macs"],
                     preset=preset, feasible=all(x <= 0 for x in cons))


# ---------------------------------------------------------------------------------------------- outputs
CSV_COLUMNS = ("arch_id", "trial", "n_trials", "preset", "score", "score_std", "latency_ms", "latency_std_ms",
               "energy_mj", "energy_std_mj", "params", "macs", "feasible", "violation", "pareto", "chosen",
               "measured_ms", "measured_status", "latency_refit_ms", "config")


def write_outputs(result: SearchResult) -> None:
    """Every file of the run directory except the study and ``command.json`` (module docstring)."""
    d = result.run_dir
    rows = [c.to_dict() for c in sorted(result.candidates, key=lambda c: c.trial)]
    atomic_write(d / "candidates.json", json.dumps(rows, indent=1))
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**{k: ("" if v is None else v) for k, v in r.items()}, "config": json.dumps(r["config"])})
    atomic_write(d / "candidates.csv", buf.getvalue())
    atomic_write(d / "pareto.json", json.dumps([c.to_dict() for c in result.pareto], indent=1))
    best = d / "best.json"
    if result.best is not None:
        atomic_write(best, result.best.cfg.to_json())
    elif best.exists():
        best.unlink()  # a resume with measurements may find that nothing is feasible any more
    try:
        atomic_write(d / "pareto.png", plot_pareto(result))
    except ImportError:
        result.notes.append("pareto.png not drawn: matplotlib is not installed (pip install matplotlib)")
    atomic_write(d / "report.md", report_markdown(result))


def plot_pareto(result: SearchResult) -> bytes:
    """The scored candidates, the feasible front with latency error bars, the budget and the presets (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    cands = result.candidates
    infeas = [c for c in cands if not c.feasible]
    feas = [c for c in cands if c.feasible]
    if infeas:
        ax.scatter([c.effective_latency_ms for c in infeas], [c.score for c in infeas], s=10, c="0.75",
                   label="infeasible")
    if feas:
        ax.scatter([c.effective_latency_ms for c in feas], [c.score for c in feas], s=12, c="tab:blue", alpha=0.6,
                   label="feasible")
    if result.pareto:
        xs = [c.effective_latency_ms for c in result.pareto]
        ax.errorbar(xs, [c.score for c in result.pareto], xerr=[c.latency_std_ms for c in result.pareto],
                    fmt="-o", c="tab:orange", ms=4, lw=1.2, elinewidth=0.8, label="Pareto front (± latency std)")
    for c in cands:
        if c.measured_ms is not None and c.measured_status == "ok":
            ax.annotate("", xy=(c.measured_ms, c.score), xytext=(c.latency_ms, c.score),
                        arrowprops={"arrowstyle": "->", "color": "k", "lw": 0.8})
    if any(c.measured_ms is not None for c in cands):
        ax.plot([], [], "k-", lw=0.8, label="predicted -> measured")
    for name, p in result.presets.items():
        ax.scatter([p.latency_ms], [p.score], marker="*", s=160, c="tab:red", edgecolors="k", zorder=5)
        ax.annotate(name.replace("edgevit_", "EdgeViT-").upper().replace("EDGEVIT", "EdgeViT"),
                    (p.latency_ms, p.score), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if result.presets:
        ax.scatter([], [], marker="*", s=80, c="tab:red", edgecolors="k", label="official EdgeViT (predicted)")
    if result.best is not None:
        b = result.best
        ax.scatter([b.effective_latency_ms], [b.score], s=120, facecolors="none", edgecolors="tab:green", lw=2,
                   zorder=6, label=f"chosen {b.arch_id}")
    if cfg.budget_ms is not None:
        ax.axvline(cfg.budget_ms, ls="--", c="k", lw=0.8, label=f"budget {cfg.budget_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency on {cfg.device} (ms, predicted unless measured)")
    ax.set_ylabel(f"accuracy score ({result.accuracy_unit})")
    ax.set_title(f"{result.run_dir.name}: {len(cands)} candidates, {result.n_trials} trials, {cfg.sampler}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def candidate_row(c: Candidate) -> dict[str, str]:
    """The columns people see for a candidate (report and terminal table)."""
    return {
        "id": c.arch_id + (f" ({c.preset})" if c.preset else ""),
        "score": _fmt(c.score, ".3f") + (f" ± {_fmt(c.score_std, '.3f')}" if _fmt(c.score_std) else ""),
        "latency ms": f"{c.latency_ms:.2f} ± {c.latency_std_ms:.2f}",
        "measured ms": _fmt(c.measured_ms) if c.measured_status in (None, "ok") else str(c.measured_status),
        "energy mJ": _fmt(c.energy_mj) if c.energy_mj is not None else "unknown",
        "params M": f"{c.params / 1e6:.2f}",
        "GMACs": f"{c.macs / 1e9:.3f}",
        "res": str(c.cfg.resolution),
        "depths": "-".join(str(x) for x in c.cfg.depths),
        "widths": "-".join(str(x) for x in c.cfg.widths),
    }


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def report_markdown(result: SearchResult) -> str:
    cfg = result.config
    budgets = ", ".join(x for x in (f"{cfg.budget_ms:g} ms" if cfg.budget_ms else "",
                                    f"{cfg.budget_mj:g} mJ" if cfg.budget_mj else "") if x) or "none"
    t = result.timings
    out = [f"# Search {result.run_dir.name}\n",
           f"- device: **{cfg.device}**; budget: **{budgets}**; objectives: {', '.join(cfg.objectives)}",
           f"- latency calibration: {result.calibration}",
           f"- {result.accuracy}",
           f"- {result.energy}",
           f"- sampler {cfg.sampler} (seed {cfg.seed}, population {cfg.population_size}), {result.n_trials} trials, "
           f"{len(result.candidates)} distinct candidates, {len(result.feasible)} feasible; workers {cfg.workers} "
           f"({'Ray' if cfg.ray else 'in-process'})",
           f"- time: search {t.get('search', 0):.1f} s (scoring {t.get('score', 0):.1f} s, driver "
           f"{t.get('ask', 0) + t.get('tell', 0):.1f} s), models {t.get('models', 0):.1f} s"
           + (f", measurement {t['measure']:.1f} s" if t.get("measure") else ""),
           "- files: command.json, study.db (optuna-dashboard sqlite:///study.db), candidates.csv/json, pareto.json, "
           "best.json, pareto.png\n"]
    out.append("## Chosen model\n")
    if result.best is not None:
        b = result.best
        lat = f"measured {b.measured_ms:.2f} ms" if b.measured_ms is not None and b.measured_status == "ok" else \
            f"predicted {b.latency_ms:.2f} ± {b.latency_std_ms:.2f} ms"
        out.append(f"`{b.arch_id}` (trial {b.trial}): score {b.score:.3f}, {lat}, {b.params / 1e6:.2f} M params, "
                   f"{b.macs / 1e9:.3f} GMACs, resolution {b.cfg.resolution}, depths {b.cfg.depths}, widths "
                   f"{b.cfg.widths}. Configuration: `best.json`.\n")
    elif result.fastest is not None:
        f = result.fastest
        out.append(f"No candidate meets the budget. The fastest found is `{f.arch_id}` at {f.effective_latency_ms:.2f} ms "
                   f"(score {f.score:.3f}); raise the budget to at least that.\n")
    out.append("## Pareto front (feasible)\n")
    out.append(_md_table([candidate_row(c) for c in result.pareto]))
    if result.presets:
        out.append("\n## Official EdgeViT presets under the same models\n")
        out.append(_md_table([{"preset": n, **candidate_row(c), "feasible": "yes" if c.feasible else "no"}
                              for n, c in result.presets.items()]))
    if result.measured:
        out.append("\n## Predicted against measured\n")
        rows = []
        for d in result.measured:
            err = (f"{(d['predicted_ms'] - d['median_ms']) / d['median_ms']:+.1%}" if d.get("median_ms") else "")
            rows.append({"id": d["arch_id"], "status": d["status"], "predicted ms": _fmt(d["predicted_ms"]),
                         "refit ms": _fmt(d.get("refit_ms")), "measured ms": _fmt(d.get("median_ms")),
                         "prediction error": err,
                         "within budget": ("" if cfg.budget_ms is None or not d.get("median_ms") else
                                           "yes" if d["median_ms"] <= cfg.budget_ms else "no")})
        out.append(_md_table(rows))
    if result.notes:
        out.append("\n## Notes\n")
        out += [f"- {n}" for n in result.notes]
    return "\n".join(out) + "\n"
