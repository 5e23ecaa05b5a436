"""Low fidelity (successive halving with real short trainings) on the generated shapes data set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.fidelity import HalvingConfig, successive_halving
from predictors.accuracy.results import read_results
from search_space import EdgeViTConfig


def small(width: int, sr: int, resolution: int = 64) -> EdgeViTConfig:
    return EdgeViTConfig.from_dict({"resolution": resolution, "num_classes": 4, "stages": [
        {"width": width, "blocks": ["local"], "mlp_ratio": 2, "kernel_size": 3},
        {"width": 2 * width, "blocks": ["lgl"], "mlp_ratio": 2, "head_dim": 16, "sr_ratio": sr, "kernel_size": 3},
        {"width": 4 * width, "blocks": ["lgl"], "mlp_ratio": 2, "head_dim": 16, "sr_ratio": 2, "kernel_size": 3},
        {"width": 4 * width, "blocks": ["global"], "mlp_ratio": 2, "head_dim": 16, "sr_ratio": 1}]})


@pytest.mark.parametrize("kw,field", [({"rungs": (3, 1)}, "rungs"), ({"eta": 1}, "eta"), ({"resolution": 8}, "resolution")])
def test_bad_schedules_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"{field}="):
        HalvingConfig(**kw)


def test_halving_trains_for_real_drops_the_worst_and_resumes(shapes, tmp_path):
    cfgs = [small(16, 2), small(32, 2), small(16, 4)]
    hc = HalvingConfig(rungs=(1, 2), eta=2, resolution=48, max_train_images=160, max_val_images=40, batch_size=32)
    results = tmp_path / "results.jsonl"
    res = successive_halving(cfgs, shapes, hc, out_dir=tmp_path / "short", results_path=results)
    first, second = res.rungs
    assert len(first.arch_ids) == 3 and len(second.arch_ids) == 2  # ceil(3 / 2) go on
    kept = sorted(first.top1, key=lambda a: -first.top1[a])[:2]
    assert sorted(second.arch_ids) == sorted(kept)
    assert res.ranking[:2] == sorted(second.top1, key=lambda a: -second.top1[a])
    assert set(res.ranking) == {c.arch_id for c in cfgs}
    # each trained at the side nearest 48 that its sampling ratios allow
    recs = read_results(results, dataset="shapes", fidelity="short", anchors=False)
    assert len(recs) == 5 and {r.epochs for r in recs} == {1, 2}
    assert all(r.resolution % cfg.side_step == 0 for r in recs for cfg in cfgs if cfg.arch_id == r.arch_id)
    assert json.loads((tmp_path / "short" / "halving.json").read_text())["ranking"] == res.ranking
    # asking again resumes every finished short run instead of training it again
    before = results.read_text()
    again = successive_halving(cfgs, shapes, hc, out_dir=tmp_path / "short", results_path=results)
    assert again.ranking == res.ranking and results.read_text() == before


def test_search_with_fidelity_short_reranks_the_top_candidates(shapes, tmp_path):
    from device_farm import MeasurementStore
    from nas.cli import main
    from predictors.latency import default_path, train

    root = tmp_path / "predictors"
    store = MeasurementStore(tmp_path / "m.sqlite")
    store.import_csv(Path(__file__).parent / "data" / "host_measurements.csv")
    train(store, "host", method="kernel").save(default_path("host", "latency", root))
    results = tmp_path / "results.jsonl"
    args = ["search", "--device", "host", "--budget-ms", "12", "--trials", "8", "--no-ray", "--no-presets",
            "--proxies", "params", "--predictors", str(root), "--out", str(tmp_path), "--run-id", "r", "--seed", "0"]
    assert main(args + ["--fidelity", "short"]) == 2  # no --data: one line, nothing run
    assert not (tmp_path / "r").exists()
    assert main(args + ["--data", str(shapes)]) == 2  # --data without --fidelity short
    code = main(args + ["--fidelity", "short", "--data", str(shapes), "--top-k", "2", "--short-epochs", "1",
                        "--short-resolution", "32", "--short-images", "64", "--results", str(results)])
    assert code == 0
    run = tmp_path / "r"
    fid = json.loads((run / "fidelity.json").read_text())
    assert len(fid["candidates"]) == 2 and [c["rank"] for c in fid["candidates"]] == [1, 2]
    assert json.loads((run / "best.json").read_text())["stages"] == fid["candidates"][0]["config"]["stages"]
    assert (run / "best_proxy.json").exists() and "Low fidelity" in (run / "report.md").read_text()
    assert len(read_results(results, fidelity="short", anchors=False)) == 2
    # asking again on the finished run resumes the short trainings and rewrites (not repeats) the section
    assert main(["search", "--resume", str(run), "--fidelity", "short", "--data", str(shapes), "--top-k", "2",
                 "--short-epochs", "1", "--short-resolution", "32", "--short-images", "64", "--results", str(results)]) == 0
    assert (run / "report.md").read_text().count("## Low fidelity") == 1
