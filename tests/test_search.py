"""``nas search`` and ``nas family``: real Optuna SQLite studies, a real local Ray, real host measurements.

Scoring uses the instant analytic accuracy score (``proxies=("params",)``) and a host latency model
trained in a fixture on ``tests/data/host_measurements.csv``, so that the tests exercise the search
machinery, not the proxies.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from device_farm import MeasurementStore
from nas.cli import main
from nas.search import Scorer, SearchConfig, hypervolume_2d, pareto_mask, resume_search, run_search
from search_space import DEFAULT_SPACE, PRESETS, EdgeViTConfig, load_config
from search_space.config import ConfigError

DATA = Path(__file__).parent / "data" / "host_measurements.csv"
FAST = {"proxies": ("params",), "device": "host"}


def _cfg(tmp_path, root, name="run", **kw) -> SearchConfig:
    base = dict(FAST, predictor_root=str(root), run_dir=str(tmp_path / name), ray=False, workers=2, n_trials=24)
    base.update(kw)
    return SearchConfig(**base)


def _study(run_dir: Path) -> optuna.Study:
    from nas.search.storage import default_url, open_storage

    return optuna.load_study(study_name=run_dir.name, storage=open_storage(default_url(run_dir)))


def _count_scoring(monkeypatch) -> list[str]:
    """Record every arch_id handed to the scorer (in-process scoring only)."""
    scored: list[str] = []
    real = Scorer.score

    def counting(self, cfgs):
        scored.extend(c.arch_id for c in cfgs)
        return real(self, cfgs)

    monkeypatch.setattr(Scorer, "score", counting)
    return scored


def _history(run_dir: Path) -> list[tuple]:
    return [(t.number, t.state.name, tuple(sorted(t.params.items())), tuple(t.values or ()))
            for t in _study(run_dir).trials]


def test_pareto_and_hypervolume_helpers():
    pts = [[1, 5], [2, 2], [3, 3], [5, 1], [2, 2]]
    assert pareto_mask(pts).tolist() == [True, True, False, True, True]
    assert hypervolume_2d([[1, 5], [2, 2], [5, 1]], (6, 6)) == pytest.approx(5 * 1 + 4 * 3 + 1 * 1)


def test_search_on_ray_respects_the_budget_and_writes_every_output(tmp_path, host_root, ray_local):
    res = run_search(_cfg(tmp_path, host_root, ray=True, budget_ms=12.0, n_trials=30), argv=["nas", "search"])
    d = res.run_dir
    assert res.n_trials == 30 and res.best is not None
    assert all(c.feasible and c.latency_ms <= 12.0 for c in res.pareto)
    assert res.best.score == max(c.score for c in res.candidates if c.latency_ms <= 12.0)
    assert {"command.json", "journal.log", "candidates.csv", "candidates.json", "pareto.json", "best.json", "pareto.png",
            "report.md"} <= {p.name for p in d.iterdir()}
    assert load_config(d / "best.json") == res.best.cfg
    front = json.loads((d / "pareto.json").read_text())
    assert len(front) == len(res.pareto) and all(EdgeViTConfig.from_dict(p["config"]) for p in front)
    assert {"score", "latency_ms", "latency_std_ms", "energy_mj", "params", "macs"} <= set(front[0])
    rows = (d / "candidates.csv").read_text().splitlines()
    assert len(rows) == len(res.candidates) + 1 and len(json.loads((d / "candidates.json").read_text())) == len(rows) - 1
    cmd = json.loads((d / "command.json").read_text())
    assert cmd["argv"] == ["nas", "search"] and {"torch", "optuna", "ray", "onnxruntime", "edgevit-nas"} <= set(cmd["versions"])
    assert cmd["config"]["workers"] == 2 and "measurements on host" in cmd["calibration"]
    assert (d / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (d / "report.md").read_text()
    assert "## Chosen model" in report and res.best.arch_id in report and "edgevit_xxs" in report
    # the presets were seeded as the first trials and are compared under the same models
    assert [res.presets[n].trial for n in PRESETS] == [0, 1, 2]


def test_same_seed_gives_the_same_trials_in_process_and_on_ray(tmp_path, host_root, ray_local):
    kw = dict(budget_ms=10.0, seed=3, n_trials=16)
    a = run_search(_cfg(tmp_path, host_root, "a", **kw))
    b = run_search(_cfg(tmp_path, host_root, "b", ray=True, **kw))
    c = run_search(_cfg(tmp_path, host_root, "c", **{**kw, "seed": 4}))
    assert _history(a.run_dir) == _history(b.run_dir)
    assert _history(a.run_dir) != _history(c.run_dir)


def test_budget_below_anything_reports_the_fastest(tmp_path, host_root, capsys):
    res = run_search(_cfg(tmp_path, host_root, budget_ms=0.01, n_trials=12))
    assert res.best is None and not res.pareto and not (res.run_dir / "best.json").exists()
    assert res.fastest.latency_ms == min(c.latency_ms for c in res.candidates)
    assert "No candidate meets the budget" in (res.run_dir / "report.md").read_text()
    code = main(["search", "--device", "host", "--budget-ms", "0.01", "--trials", "6", "--no-ray", "--proxies", "params",
                 "--predictors", str(host_root), "--out", str(tmp_path), "--run-id", "cli"])
    out = capsys.readouterr().out
    assert code == 1 and "no candidate meets 0.01 ms" in out and "the fastest is" in out


def test_confidence_judges_the_budget_on_mean_plus_z_sigma(tmp_path, host_root):
    """The same random trials judged on the mean and at confidence 0.9: the budget is one candidate's
    own predicted mean, so that candidate meets it on the mean and misses it at mean + 1.28 sigma."""
    kw = dict(sampler="random", n_trials=12, seed_presets=False)
    scan = run_search(_cfg(tmp_path, host_root, "scan", **kw))
    edge = sorted(scan.candidates, key=lambda c: c.latency_ms)[len(scan.candidates) // 2]
    budget = edge.latency_ms
    mean = run_search(_cfg(tmp_path, host_root, "mean", budget_ms=budget, **kw))
    sure = run_search(_cfg(tmp_path, host_root, "sure", budget_ms=budget, confidence=0.9, **kw))
    assert {c.arch_id for c in sure.candidates} == {c.arch_id for c in mean.candidates}  # the same trials
    assert all(c.feasible == (c.latency_ms <= budget) for c in mean.candidates)
    by_id = {c.arch_id: c for c in sure.candidates}
    assert all(c.latency_std_ms > 0 for c in sure.candidates)
    for c in sure.candidates:
        assert c.feasible == (c.latency_ms + 1.2816 * c.latency_std_ms <= budget)
    assert by_id[edge.arch_id].feasible is False and next(c for c in mean.candidates if c.arch_id == edge.arch_id).feasible
    assert {c.arch_id for c in sure.feasible} < {c.arch_id for c in mean.feasible}
    assert sure.best is not None  # met at 90%: the model gives it at least that probability
    assert sure.best.p_within(budget) >= 0.9 > by_id[edge.arch_id].p_within(budget)
    report = (sure.run_dir / "report.md").read_text()
    assert "with confidence 0.9 (mean + 1.28 sigma)" in report and "under its model; judged at mean + 1.28 sigma" in report
    # a clean measurement carries no model uncertainty: it is judged as measured
    edge_c = by_id[edge.arch_id]
    edge_c.measured_ms, edge_c.measured_status = budget, "ok"
    assert edge_c.latency_bound_ms(1.28) == budget and edge_c.p_within(budget) == 1.0


def test_duplicates_are_told_the_stored_values_and_never_scored_again(tmp_path, host_root, monkeypatch):
    first = run_search(_cfg(tmp_path, host_root, n_trials=8))
    study = _study(first.run_dir)
    old = study.trials[5]
    fresh_cfg = next(c for c in DEFAULT_SPACE.sample_random(50, seed=11) if c.arch_id not in
                     {t.user_attrs["arch_id"] for t in study.trials})
    for params in (old.params, old.params, DEFAULT_SPACE.params_of(fresh_cfg), DEFAULT_SPACE.params_of(fresh_cfg)):
        study.enqueue_trial(params)
    scored = _count_scoring(monkeypatch)
    res = resume_search(first.run_dir, n_trials=12)
    new = _study(first.run_dir).trials[8:12]
    assert scored == [fresh_cfg.arch_id]  # the old candidate not at all, the new one once (one batch, two trials)
    assert [t.user_attrs.get("duplicate_of") for t in new] == [5, 5, None, 10]
    assert new[0].values == old.values and new[3].values == new[2].values
    assert len(res.candidates) == 9 and next(c for c in res.candidates if c.arch_id == old.user_attrs["arch_id"]).n_trials == 3


def test_resume_continues_without_redoing_finished_trials(tmp_path, host_root):
    first = run_search(_cfg(tmp_path, host_root, budget_ms=10.0, n_trials=10))
    before = _history(first.run_dir)
    # a trial left RUNNING, as a kill between ask and tell leaves it
    study = _study(first.run_dir)
    t = study.ask()
    DEFAULT_SPACE.sample(t)
    res = resume_search(first.run_dir, n_trials=16)
    trials = _study(first.run_dir).trials
    assert _history(first.run_dir)[:10] == before
    assert _interrupted(trials[10])
    redo = [x for x in trials if x.user_attrs.get("redo_of") == 10]
    assert len(redo) == 1 and redo[0].params == trials[10].params and redo[0].state == TrialState.COMPLETE
    assert res.n_trials == 16 and sum(x.state == TrialState.COMPLETE for x in trials) == 16
    assert not any(x.state == TrialState.RUNNING for x in trials)
    assert len(json.loads((first.run_dir / "command.json").read_text())["resumes"]) == 1


def _interrupted(t) -> bool:
    """A trial a kill or Ctrl-C left running, failed on resume without an error (public API only)."""
    return t.state == TrialState.FAIL and "error" not in t.user_attrs


def test_kill_9_mid_run_then_resume(tmp_path, host_root):
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nas", "search", "--device", "host", "--proxies", "params", "--no-ray", "--workers", "2",
           "--trials", "500", "--predictors", str(host_root), "--out", str(tmp_path), "--run-id", "killed"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and done < 12:
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode()
            if (run_dir / "journal.log").exists():
                try:
                    done = sum(t.state == TrialState.COMPLETE for t in _study(run_dir).trials)
                except Exception:  # the study is still being created
                    pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = [h for h in _history(run_dir) if h[1] == "COMPLETE"]
    assert len(before) >= 12
    target = len(_study(run_dir).trials) + 6
    assert main(["search", "--resume", str(run_dir), "--trials", str(target)]) == 0
    trials = _study(run_dir).trials
    assert [h for h in _history(run_dir) if h[0] <= before[-1][0] and h[1] == "COMPLETE"] == before
    finished = [t for t in trials if t.state != TrialState.RUNNING and not _interrupted(t)]
    assert len(finished) == target and not any(t.state == TrialState.RUNNING for t in trials)
    killed = [t.number for t in trials if _interrupted(t) and t.params]  # killed before sampling: no params
    assert sorted(t.user_attrs["redo_of"] for t in trials if "redo_of" in t.user_attrs) == killed


def test_measured_winner_over_budget_is_never_the_winner(tmp_path, host_root, monkeypatch):
    cfg = _cfg(tmp_path, host_root, budget_ms=10.0, n_trials=16, measure_top_k=2)
    calls: list[str] = []

    def fake(self, farm, cfgs, profile):  # the device says the predicted winner is slower than the budget
        for c in cfgs:
            calls.append(c.arch_id)
            ms = 30.0 if len(calls) == 1 else 5.0  # the normalised latency (what is judged) and the raw median
            yield SimpleNamespace(arch_id=c.arch_id, status="ok", median_ms=ms * 1.1, latency_ms=ms,
                                  ci95_rel=0.01, energy_mj=None, error=None)

    monkeypatch.setattr("nas.search.driver._Search._measure_many", fake)
    monkeypatch.setattr("nas.search.driver._Search._refit", lambda self, cands, done: None)
    res = run_search(cfg)
    over = calls[0]
    assert res.best is not None and res.best.arch_id != over and res.best.measured_ms == 5.0
    assert next(c for c in res.candidates if c.arch_id == over).feasible is False
    measured = json.loads((res.run_dir / "measured.json").read_text())
    assert {m["arch_id"] for m in measured} == set(calls)
    assert "Predicted against measured" in (res.run_dir / "report.md").read_text()


def test_measure_in_the_loop_on_the_host(tmp_path, monkeypatch, host_root, host_store, onnx_cache):
    """Real onnxruntime measurement of the winner, stored, and the host model retrained on the store.
    The farm is the real one with the suite's short protocol and export cache (the default protocol's
    3 s sessions made this the suite's longest search test; the instrument has its own tests)."""
    import functools

    import device_farm.measure
    from test_measure import QUICK

    monkeypatch.setattr(device_farm.measure, "Farm",
                        functools.partial(device_farm.measure.Farm, cache_dir=onnx_cache, protocol=QUICK))
    root, store = tmp_path / "pred", tmp_path / "m.sqlite"
    shutil.copytree(host_root, root)
    shutil.copy(host_store, store)
    n_before = len(MeasurementStore(store).query(device="host", status="ok"))
    res = run_search(_cfg(tmp_path, root, budget_ms=4.0, n_trials=10, measure_top_k=1, store=str(store),
                          seed_presets=False))
    assert res.measured and res.measured[0]["status"] in ("ok", "disturbed")
    assert len(MeasurementStore(store).query(device="host")) > n_before
    if res.best is not None and res.best.measured_status == "ok":
        assert res.best.measured_ms <= 4.0
    if res.measured[0]["status"] == "ok":
        assert any("retrained" in n for n in res.notes) and res.measured[0]["refit_ms"] is not None


def test_family_of_two_budgets_is_exported_and_registered_with_timm(tmp_path, host_root):
    import timm

    from nas.family import register_family, run_family

    fam = run_family("host", [12, 6], n_trials=24, ray=False, workers=2, proxies=("params",), sampler="nsga2",
                     predictor_root=str(host_root), run_dir=str(tmp_path / "fam"))
    assert [m.budget_ms for m in fam.members] == [6.0, 12.0]
    assert all(m.candidate is not None and m.candidate.latency_ms <= m.budget_ms for m in fam.members)
    assert fam.members[0].candidate.score <= fam.members[1].candidate.score
    entries = json.loads((fam.run_dir / "family.json").read_text())
    assert [e["name"] for e in entries] == ["edgevit_host_6ms", "edgevit_host_12ms"] == fam.registered
    assert all((fam.run_dir / "family" / e["onnx"]).stat().st_size > 0 for e in entries)
    assert "edgevit_host_6ms" in (fam.run_dir / "family.md").read_text()
    assert register_family(fam.run_dir / "family.json") == fam.registered
    model = timm.create_model("edgevit_host_6ms", num_classes=7)
    assert model.cfg.arch_id == EdgeViTConfig.from_dict(entries[0]["config"]).replace(num_classes=7).arch_id
    assert timm.models.get_pretrained_cfg("edgevit_host_6ms").input_size[1] == entries[0]["config"]["resolution"]


@pytest.mark.parametrize("argv,expected", [
    (["search", "--device", "nope", "--budget-ms", "30"], "known devices: host, host-litert, host-litert-noxnn, pixel1, pixel4, s21"),
    (["search", "--budget-ms", "30"], "--device is required (known devices:"),
    (["search", "--resume", "runs/x", "--device", "s21"], "drop --device (only --trials and --workers may change)"),
    (["search", "--device", "host", "--mode", "budget"], "mode='budget': needs a budget"),
    (["search", "--device", "host", "--budget-mj", "5"], "--budget-mj needs an energy model for host"),
    (["search", "--device", "host", "--objectives", "accuracy,latency,energy"], "the energy objective needs an energy"),
    (["search", "--device", "host", "--no-ray", "--ray-address", "auto"], "--no-ray and --ray-address conflict"),
    (["search", "--device", "host", "--sampler", "cmaes"], "sampler='cmaes': allowed: auto, nsga2, tpe, gp, random"),
    (["search", "--device", "host", "--budget-ms", "-3"], "budget_ms=-3.0: must be a number > 0"),
    (["search", "--device", "host", "--objectives", "latency"], "objectives='latency': allowed"),
    (["search", "--device", "host", "--budget-ms", "9", "--confidence", "95"], "confidence=95.0: must be a probability"),
    (["search", "--device", "s21", "--measure", "3"], "s21 is not: no adb serial"),
    (["search", "--resume", "nowhere"], "resume='nowhere': is not a search run directory"),
    (["family", "--device", "host", "--budgets", "5", "--like", "edgevit"], "exactly one of --budgets"),
    (["family", "--device", "host", "--budgets", "5,fast"], "--budgets '5,fast': comma-separated numbers"),
])
def test_bad_input_is_one_line(argv, expected, host_root, tmp_path, capsys, ray_local):
    if argv[0] == "search" and "--resume" not in argv:
        argv = argv + ["--predictors", str(host_root), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
def test_every_sampler_runs_under_a_budget(sampler, tmp_path, host_root):
    mode = "budget" if sampler == "tpe" else "front"
    res = run_search(_cfg(tmp_path, host_root, sampler=sampler, budget_ms=10.0, n_trials=12, seed_presets=False,
                          mode=mode))
    assert res.n_trials == 12 and all(c.latency_ms <= 10.0 for c in res.pareto)
    trial = _study(res.run_dir).trials[-1]  # budget mode: one objective, the score; the budget a constraint
    assert len(trial.values) == (1 if mode == "budget" else 2) and "latency_ms" in trial.constraints
    assert f"mode {mode}" in (res.run_dir / "report.md").read_text()


def test_auto_sampler_is_resolved_once_when_the_run_starts(tmp_path, host_root):
    """``auto``: TPE up to AUTO_TPE_MAX_TRIALS trials, NSGA-II beyond; the run keeps what it started with."""
    from nas.search.config import AUTO_TPE_MAX_TRIALS

    assert SearchConfig(device="host", n_trials=AUTO_TPE_MAX_TRIALS).effective_sampler == "tpe"
    assert SearchConfig(device="host", n_trials=AUTO_TPE_MAX_TRIALS + 1).effective_sampler == "nsga2"
    res = run_search(_cfg(tmp_path, host_root, sampler="auto", budget_ms=10.0, n_trials=8))
    saved = json.loads((res.run_dir / "command.json").read_text())["config"]
    assert res.config.sampler == saved["sampler"] == "tpe"


def test_energy_objective_and_budget_use_the_devices_energy_model(tmp_path, host_root):
    root = tmp_path / "pred"
    shutil.copytree(host_root, root)
    d = json.loads((root / "host-latency.json").read_text())
    d["target"] = "energy"  # a stand-in energy model with the same format (no energy measurements exist here)
    (root / "host-energy.json").write_text(json.dumps(d))
    res = run_search(_cfg(tmp_path, root, objectives=("accuracy", "latency", "energy"), budget_ms=12.0, budget_mj=8.0,
                          n_trials=16, mode="front"))
    assert all(c.energy_mj is not None for c in res.candidates) and "energy: 287 measurements" in res.energy
    assert all(c.latency_ms <= 12.0 and c.energy_mj <= 8.0 for c in res.pareto)
    trial = _study(res.run_dir).trials[-1]
    assert len(trial.values) == 3 and set(trial.constraints) == {"latency_ms", "energy_mj"}


def test_a_shared_storage_study_is_continued_by_a_second_driver(tmp_path, host_root, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = run_search(_cfg(tmp_path, host_root, "a", storage=url, study_name="shared", n_trials=8))
    scored = _count_scoring(monkeypatch)
    b = run_search(_cfg(tmp_path, host_root, "b", storage=url, study_name="shared", n_trials=14))
    assert b.n_trials == 14 and not (tmp_path / "b" / "study.db").exists()
    assert {c.arch_id for c in a.candidates} <= {c.arch_id for c in b.candidates}
    assert not set(scored) & {c.arch_id for c in a.candidates}


def test_default_workers_do_not_depend_on_the_core_count(tmp_path, host_root, ray_local):
    """The same command gives the same trials without Ray (1 process) and on a 2-CPU Ray (issue #17)."""
    kw = dict(budget_ms=10.0, seed=5, n_trials=12, workers=None)
    a = run_search(_cfg(tmp_path, host_root, "a", **kw))
    b = run_search(_cfg(tmp_path, host_root, "b", ray=True, **kw))
    assert a.config.workers == b.config.workers
    assert [t.params for t in _study(a.run_dir).trials] == [t.params for t in _study(b.run_dir).trials]


def test_parallel_launches_with_the_default_id_never_share_a_run(tmp_path):
    from nas.search.rundir import create_run_dir

    a, lock_a = create_run_dir(tmp_path, "s21-30ms-20261202-101500", unique=True)
    b, lock_b = create_run_dir(tmp_path, "s21-30ms-20261202-101500", unique=True)
    assert a != b and b.name.endswith("-2") and a.is_dir() and b.is_dir()
    with pytest.raises(ConfigError, match="another nas search is running"):
        from nas.search.rundir import RunLock

        RunLock(a).acquire()
    lock_a.release()
    lock_b.release()
    with pytest.raises(ConfigError, match="already exists"):
        create_run_dir(tmp_path, a.name, unique=False)


@pytest.mark.parametrize("storage", ["dir", "garbage", "postgresql://u@127.0.0.1:1/none"])
def test_a_storage_that_cannot_open_leaves_no_run_behind(storage, tmp_path, host_root):
    if storage == "dir":
        (tmp_path / "d").mkdir()
        storage = f"sqlite:///{tmp_path / 'd'}"
    elif storage == "garbage":
        (tmp_path / "g.db").write_bytes(b"\x00not a database at all")
        storage = f"sqlite:///{tmp_path / 'g.db'}"
    with pytest.raises(ConfigError, match="storage=") as e:
        run_search(_cfg(tmp_path, host_root, "r", storage=storage, n_trials=4))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r").exists()  # the run id is free again


def test_the_run_journal_survives_a_torn_write_and_reads_as_an_optuna_journal(tmp_path):
    """A kill mid-write leaves half a line; reopening cuts it and keeps every complete operation, and
    Optuna's own journal backend (what optuna-dashboard reads) reads the file (issue #16)."""
    from optuna.storages.journal import JournalFileBackend

    from nas.search.storage import open_storage

    path = tmp_path / "journal.log"
    study = optuna.create_study(storage=open_storage(f"journal:///{path}", single_writer=True), study_name="s")
    for i in range(5):
        t = study.ask()
        t.suggest_int("x", 0, 10)
        study.tell(t, float(i))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 4, "worker_id": "torn')  # a write cut off by kill -9
    again = optuna.load_study(study_name="s", storage=open_storage(f"journal:///{path}", single_writer=True))
    assert [t.value for t in again.trials] == [0.0, 1.0, 2.0, 3.0, 4.0] and path.read_bytes() == whole
    theirs = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    assert [t.params for t in theirs.trials] == [t.params for t in again.trials]


def test_default_score_is_an_estimated_top1_and_flags_candidates_outside_its_evidence(tmp_path, host_root, capsys):
    """Issue #15: without --proxies the score is the prior's top-1 with an interval; the table, the
    report and the printed lines say what it is, where it was validated, and flag what lies outside."""
    from nas.search.outputs import candidate_row, evidence

    res = run_search(_cfg(tmp_path, host_root, proxies=None, n_trials=12, budget_ms=40.0))
    assert res.accuracy_unit == "top-1 %" and res.accuracy_domain is not None
    assert all(50 < c.score < 95 and c.score_std > 0 for c in res.candidates)
    report = (res.run_dir / "report.md").read_text()
    assert "est. top-1 %" in report and "validated on" in report and "| evidence |" in report
    big = next(c for c in res.candidates if c.preset == "edgevit_s" or c.trial == 0)
    dom = res.accuracy_domain
    from predictors.accuracy import Domain

    tight = Domain((dom.params[0], big.params - 1), dom.macs, dom.resolution, "test")
    row = candidate_row(big, tight, res.accuracy_unit)
    assert row["evidence"].startswith("outside: params") and " ± " in row["score"]
    assert evidence(big, None) == ""
    from nas.search_cli import print_result

    print_result(__import__("nas.common", fromlist=["console"]).console(), res)
    out = capsys.readouterr().out
    assert "est. top-1 %" in out and "validated on" in out and "evidence" in out
