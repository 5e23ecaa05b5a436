"""The driver: one process owns the Optuna study and talks to it by ask/tell (module doc of :mod:`nas.search`)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from search_space import DEFAULT_SPACE, PRESETS, EdgeViTConfig
from search_space.config import ConfigError
from search_space.files import atomic_write

from .config import DEFAULT_WORKERS, OBJECTIVES, SearchConfig, new_run_id
from .outputs import write_outputs
from .pareto import pareto_mask
from .results import Candidate, SearchProgress, SearchResult, jsonable, make_candidate
from .rundir import RunLock, create_run_dir, remove_unstarted
from .scoring import LocalPool, RayPool, Scorer
from .storage import check_url, default_url, open_storage

__all__ = ["run_search", "resume_search"]


def _energy_model(device: str, root: str):
    from predictors.latency import NoDataError, load_device_model

    try:
        p = load_device_model(device, root, target="energy")
    except NoDataError as e:
        return None, f"energy unknown: {e}"
    return p, f"energy: {p.n_measurements} measurements on {device}, method {p.method}"


# ---------------------------------------------------------------------------------------------- entry points
def run_search(config: SearchConfig, progress: Callable[[SearchProgress], None] | None = None,
               argv: Sequence[str] | None = None) -> SearchResult:
    """Start a search in ``config.run_dir`` (default ``runs/<run-id>``) and run it to the end."""
    config.validate()
    run_dir = Path(config.run_dir) if config.run_dir else Path("runs") / new_run_id(config)
    if (run_dir / "command.json").exists():  # checked again, atomically, when the folder is made
        raise ConfigError("run_dir", str(run_dir), "already holds a search; resume it with 'nas search --resume "
                          f"{run_dir}' or choose another --run-id")
    return _Search(config, run_dir, progress, unique_id=config.run_dir is None).run(fresh=True, argv=argv)


def resume_search(run_dir: str | os.PathLike, progress: Callable[[SearchProgress], None] | None = None,
                  n_trials: int | None = None, workers: int | None = None,
                  argv: Sequence[str] | None = None) -> SearchResult:
    """Continue the search in ``run_dir`` with its stored settings; ``n_trials``/``workers`` may change."""
    from search_space.files import FileFormatError, read_json

    run_dir = Path(run_dir)
    path = run_dir / "command.json"
    if not path.is_file():
        raise ConfigError("resume", str(run_dir), "is not a search run directory (no command.json)")
    try:
        doc = read_json(path, max_bytes=16 * 1024 * 1024, what="run settings")
        config = SearchConfig.from_dict(doc["config"])
    except FileFormatError as e:
        raise ConfigError("resume", str(run_dir), f"its command.json cannot be read ({e})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError("resume", str(run_dir), f"its command.json holds no valid search settings ({e})") from None
    changes: dict[str, Any] = {"run_dir": str(run_dir)}
    if n_trials is not None:
        changes["n_trials"] = n_trials
    if workers is not None:
        changes["workers"] = workers
    config = replace(config, **changes).validate()
    return _Search(config, run_dir, progress).run(fresh=False, argv=argv)


# ---------------------------------------------------------------------------------------------- the driver
def _measured_ms(d: dict[str, Any]) -> float | None:
    """A measured candidate's latency in the unit predictors learn (runs before ``latency_ms`` was
    recorded kept only the raw median)."""
    return d.get("latency_ms", d.get("median_ms"))


def extrapolation_note(latency, c: Candidate | None, device: str) -> str | None:
    """A line when ``c`` lies beyond its phone model's block tables (``PhoneLatencyPredictor.beyond_tables``:
    a LocalAgg kernel or an attention side the tables never measured); None for a clean measurement,
    a model without block tables, or a candidate inside them. Why: those networks carried the largest
    misses of the same-device check, and the mean alone does not show it."""
    estimator = getattr(latency, "estimator", None)
    if c is None or c.latency_known or not hasattr(estimator, "beyond_tables"):
        return None
    reasons = estimator.beyond_tables(c.cfg)
    if not reasons:
        return None
    # Figures: bench/RESULTS.md, phone_validation twelfth round and its coverage section (LiteRT on the
    # AMD EPYC, 72 networks): inside the grid 81% within 10%; kernel-7 LocalAgg networks predicted 18% low
    # relative to the others; attention beyond the grid 20% within 10%.
    return (f"the chosen model lies beyond {device}'s block tables ({'; '.join(reasons)}): its latency is "
            "extrapolated there, where the same-device check made its largest misses (inside the tables 81% of "
            "networks within 10%; kernel-7 LocalAgg predicted 18% low, attention beyond them 20% within 10%; "
            f"bench/RESULTS.md, phone_validation); --confidence 0.9 allows for part of it, a measurement settles "
            f"it (nas farm calibrate --device {device})")


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



class _Search:
    def __init__(self, config: SearchConfig, run_dir: Path, progress: Callable[[SearchProgress], None] | None,
                 unique_id: bool = False):
        self.config = config
        self.unique_id = unique_id
        self.run_dir = run_dir
        self.progress = progress or (lambda p: None)
        self.run_id = run_dir.name
        self.timings = {"ask": 0.0, "score": 0.0, "tell": 0.0, "search": 0.0, "models": 0.0, "measure": 0.0}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def _storage_url(self) -> str:
        return self.config.storage or default_url(self.run_dir)

    def _load_models(self) -> None:
        from predictors.accuracy import load_accuracy_model
        from predictors.latency import NoDataError, load_device_model

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
        # Drivers sharing a study draw from their own streams (seed and run id), else two drivers with
        # the same seed would propose, and score, the same candidates at the same time.
        entropy = [cfg.seed, n_existing] + ([int.from_bytes(self.run_id.encode()[:16], "big")] if cfg.storage else [])
        seed = cfg.seed if len(entropy) == 2 and n_existing == 0 else int(
            np.random.SeedSequence(entropy).generate_state(1)[0])
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
        directions = self._directions()
        storage = open_storage(self._storage_url(), single_writer=not self.config.storage)
        n_existing = 0
        try:
            existing = optuna.load_study(study_name=cfg.study_name, storage=storage)
            n_existing = len(existing.get_trials(deepcopy=False))
        except KeyError:
            pass
        try:  # creating is atomic in the storage: exactly one of several drivers creates the study
            study = optuna.create_study(study_name=cfg.study_name, storage=storage, directions=directions,
                                        sampler=self._sampler(n_existing), load_if_exists=False)
            self.created_study = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=self._sampler(n_existing))
            self.created_study = False
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
            from device_farm.reachability import reachable

            ok, why = reachable(get_profile(self.config.device))
            if not ok:
                raise ConfigError("measure_top_k", self.config.measure_top_k,
                                  f"needs a reachable device; {self.config.device} is not: {why}")
        if self.config.storage:
            check_url(self.config.storage)
        self._load_models()
        if fresh:  # the folder is made atomically and locked at once; a taken default id gets a suffix
            self.run_dir, lock = create_run_dir(self.run_dir.parent, self.run_dir.name, self.unique_id)
            self.run_id = self.run_dir.name
            self.config = replace(self.config, run_dir=str(self.run_dir),
                                  study_name=self.config.study_name or self.run_dir.name)
        else:
            lock = RunLock(self.run_dir).acquire()
        try:
            try:
                study = self._open_study()
            except BaseException:
                if fresh:
                    lock.release()
                    remove_unstarted(self.run_dir)  # nothing of the run exists yet: the id is free again
                raise
            self._write_command(fresh, argv)
            key = f"{self.run_dir.resolve()}:{os.getpid()}:{time.time_ns()}"
            self.pool = RayPool(self.scorer, key) if self.config.ray else LocalPool(self.scorer)
            if fresh and self.config.seed_presets and self.created_study:  # only the driver that created the study
                for name, p in PRESETS.items():
                    if DEFAULT_SPACE.contains(p):
                        study.enqueue_trial(DEFAULT_SPACE.params_of(p), user_attrs={"preset": name})
            self._recover(study)
            self._loop(study)
            return self._finish(study)
        finally:
            lock.release()

    def _resolve_parallelism(self) -> None:
        cfg = self.config
        if cfg.ray:
            from device_farm.ray_farm import init_ray

            init_ray(cfg.ray_address, local_devices=("host",))
        # The trial sequence depends on how many trials a round asks before it tells them, so that
        # number is a setting, never the machine's core count. A round is scored in ``workers``
        # chunks in process and on Ray alike: the same chunks give the same floating-point sums
        # (a batch of another size can round the last digit differently), whatever the cores.
        workers = cfg.workers or DEFAULT_WORKERS
        self.population = cfg.population_size or max(8, min(50, cfg.n_trials // 10))
        # ``auto`` is resolved once, when the run starts: a resume with more trials keeps its sampler.
        self.config = replace(cfg, workers=workers, population_size=self.population, sampler=cfg.effective_sampler)

    def _recover(self, study) -> None:
        """Fail the trials a kill left RUNNING (they are this run's: the run lock is ours) and redo them."""
        from optuna.trial import TrialState

        run = self.run_id
        # In a shared study a trial another driver has just asked carries no "run" yet: only trials
        # marked as ours are failed there (failing theirs would break their tell).
        unmarked = None if self.config.storage is not None else run
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("run", unmarked) != run:
                continue  # another driver's trial in a shared study
            study.tell(t.number, state=TrialState.FAIL)  # a FAIL without "error" is an interrupted trial
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
        # An interrupted trial (killed driver, Ctrl-C) was failed without an "error" and asked again: not counted.
        return sum(1 for t in done if t.state != TrialState.FAIL or "error" in t.user_attrs)

    def _constraint_names(self) -> list[str]:
        cfg = self.config
        return [n for n, b in (("latency_ms", cfg.budget_ms), ("energy_mj", cfg.budget_mj)) if b is not None]

    def _constraints(self, r: dict[str, Any]) -> list[float]:
        cfg = self.config
        out = []
        z = cfg.z  # 0 without --confidence: the mean is judged
        if cfg.budget_ms is not None:
            out.append(r["latency_ms"] + z * r["latency_std_ms"] - cfg.budget_ms)
        if cfg.budget_mj is not None:
            out.append(r["energy_mj"] + z * (r.get("energy_std_mj") or 0.0) - cfg.budget_mj)
        return out

    def _directions(self) -> list[str]:
        if self.config.mode == "budget":
            return ["maximize"]  # the score alone; the budgets are the trials' constraints
        return [OBJECTIVES[o] for o in self.config.objectives]

    def _values(self, r: dict[str, Any]) -> list[float]:
        if self.config.mode == "budget":
            return [r["score"]]
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
                running = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
                for trial, _ in asked:
                    t = running.get(trial.number)
                    if t is not None:
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
        from optuna.trial import FixedTrial, TrialState

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
            c = EdgeViTConfig.from_dict(cfg_d) if cfg_d else DEFAULT_SPACE.sample(FixedTrial(t.params))
            out[aid] = make_candidate(aid, t.number, c, t.user_attrs["result"], t.user_attrs.get("constraints", []),
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
        fastest = min(cands, key=lambda c: c.latency_bound_ms(cfg.z), default=None)
        return front, best, fastest

    def _feasibility(self, c: Candidate) -> None:
        """``violation``: the relative excess over each budget, summed; feasible when zero. With
        ``confidence``, the excess of ``mean + z sigma`` (:meth:`Candidate.latency_bound_ms`)."""
        cfg = self.config
        v, z = 0.0, cfg.z
        if cfg.budget_ms is not None:
            v += max(0.0, c.latency_bound_ms(z) - cfg.budget_ms) / cfg.budget_ms
        if cfg.budget_mj is not None and c.energy_mj is not None:
            v += max(0.0, c.energy_mj + z * (c.energy_std_mj or 0.0) - cfg.budget_mj) / cfg.budget_mj
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
                    out[name] = make_candidate(p.arch_id, -1, p, r, self._constraints(r), name)
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
        beyond = extrapolation_note(self.latency, best, self.config.device)
        result = SearchResult(self.run_dir, self.config, cands, front, best, fastest, presets, self.latency.calibration,
                              self.accuracy.describe(), getattr(self.accuracy, "unit", "score"), self.energy_line,
                              self._finished(study), measured, dict(self.timings), [*self.notes, *filter(None, [beyond])],
                              accuracy_domain=self.accuracy.domain() if hasattr(self.accuracy, "domain") else None)
        self.progress(SearchProgress("outputs", message=f"writing {self.run_dir}"))
        write_outputs(result)
        return result

    # ------------------------------------------------------------------ measurement in the loop
    def _measure(self, cands: list[Candidate]) -> list[dict[str, Any]]:
        from device_farm import DEFAULT_STORE, MeasurementStore, get_profile
        from device_farm.measure import Farm
        from device_farm.reachability import reachable

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
                # latency_ms: the drift-normalised latency where the store gives one, the unit the
                # device's model learns and predicts (the raw median stays beside it)
                done[m.arch_id] = {"arch_id": m.arch_id, "status": m.status, "median_ms": m.median_ms,
                                   "latency_ms": m.latency_ms, "ci95_rel": m.ci95_rel, "energy_mj": m.energy_mj, "error": m.error,
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
        out = [dict(d, refit_ms=jsonable(by_id[a].latency_refit_ms) if a in by_id else None) for a, d in done.items()]
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
                c.measured_ms, c.measured_status = _measured_ms(d), d["status"]

    def _refit(self, cands: list[Candidate], done: dict[str, dict[str, Any]]) -> None:
        """Refit the latency model on the new measurements and re-predict every candidate (module docstring)."""
        from device_farm import DEFAULT_STORE, MeasurementStore
        from predictors.latency import NoDataError, default_path, load_device_model, train

        cfg = self.config
        ok = [(_measured_ms(d), d["predicted_ms"]) for d in done.values() if d["status"] == "ok" and _measured_ms(d)]
        if not ok:
            self.notes.append("no clean measurement: the predictions stand unchanged")
            return
        if self.latency.source == "measured":
            try:
                p = train(MeasurementStore(cfg.store or DEFAULT_STORE), cfg.device)
            except NoDataError as e:
                self.notes.append(f"latency model not retrained: {e}")
                return
            p.save(default_path(cfg.device, "latency", cfg.predictor_root))
            self.latency = load_device_model(cfg.device, cfg.predictor_root)
            mean, _ = self.latency.predict([c.cfg for c in cands])
            self.notes.append(f"latency model retrained on {p.n_measurements} measurements of {cfg.device} (method {p.method}) "
                              f"including the {len(ok)} new ones, and every candidate re-predicted")
        else:
            ratio = float(np.exp(np.mean([np.log(m / p) for m, p in ok])))
            mean = np.array([c.latency_ms * ratio for c in cands])
            atomic_write(self.run_dir / "correction.json", json.dumps(
                {"device": cfg.device, "scale": ratio, "n": len(ok), "model": self.latency.source}, indent=2))
            self.notes.append(f"{cfg.device}'s {self.latency.source} model corrected by x{ratio:.3f} (geometric mean of "
                              f"measured/predicted over {len(ok)} measurement(s)); 'nas farm calibrate --device "
                              f"{cfg.device}' fits a full model")
        for c, m in zip(cands, mean):
            c.latency_refit_ms = float(m)


