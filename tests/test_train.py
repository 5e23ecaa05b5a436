"""Full training (issue #7) on a real, generated image data set: coloured shapes, 4 classes.

Each test names the behaviour a user relies on: a short CPU run learns; an interrupted run resumed
from its checkpoint ends exactly where the uninterrupted one does; the result record reaches the
accuracy predictor; bad input ends in one line and touches no checkpoint; the CLI, ``--pick`` and
torchrun work end to end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import N_TRAIN
from nas import train as T
from nas.cli import main
from nas.common import CommandError
from nas.train_cli import candidates
from predictors.accuracy.results import read_results
from search_space import EdgeViTConfig, build_model
from search_space.config import ConfigError

TIMING = ("images_per_s", "train_s", "seconds", "time")
REPO = Path(__file__).resolve().parents[1]


def tiny(resolution: int = 64, num_classes: int = 4) -> EdgeViTConfig:
    """A small valid EdgeViT: every block kind, attention with sparse sampling in stages 2 and 3."""
    return EdgeViTConfig.from_dict({"resolution": resolution, "num_classes": num_classes, "name": "tiny", "stages": [
        {"width": 16, "blocks": ["local"], "mlp_ratio": 2, "kernel_size": 3},
        {"width": 32, "blocks": ["lgl"], "mlp_ratio": 2, "head_dim": 16, "sr_ratio": 2, "kernel_size": 3},
        {"width": 64, "blocks": ["lgl"], "mlp_ratio": 2, "head_dim": 16, "sr_ratio": 2, "kernel_size": 3},
        {"width": 64, "blocks": ["global"], "mlp_ratio": 2, "head_dim": 32, "sr_ratio": 1}]})


@pytest.fixture(scope="module")
def learned(shapes, tmp_path_factory):
    """One short CPU training of the tiny candidate (shared by the tests that read its outputs)."""
    tmp = tmp_path_factory.mktemp("learned")
    rec = T.short_train(tiny(), shapes, epochs=6, out_dir=tmp / "run", results_path=tmp / "results.jsonl",
                        batch_size=32, lr=2e-3, scale_min=0.35, workers=0)
    return rec, tmp


# ---------------------------------------------------------------------------------------- recipe
def test_defaults_are_the_released_edgevit_recipe():
    tc = T.TrainConfig()
    assert (tc.epochs, tc.opt, tc.weight_decay, tc.warmup_epochs, tc.min_lr) == (300, "adamw", 0.05, 5, 1e-5)
    assert (tc.aa, tc.mixup, tc.cutmix, tc.smoothing, tc.reprob) == ("rand-m9-mstd0.5-inc1", 0.8, 1.0, 0.1, 0.25)
    assert (tc.drop_path, tc.model_ema_decay, tc.amp) == (0.1, 0.99996, True)
    assert tc.lr_for(world_size=8) == pytest.approx(5e-4 * 256 * 8 / 512)  # 8 GPUs x 256, as released
    assert T.TrainConfig(lr=1e-3).lr_for(8) == 1e-3
    with pytest.raises(ConfigError, match="batch_size=31: must be even"):
        T.TrainConfig(batch_size=31)


def test_randaugment_survives_pillow_refusing_zero_bit_posterize():
    from timm.data.auto_augment import AugmentOp

    T._transforms(T.TrainConfig(), 32)  # installs the shim where Pillow needs it
    op = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)  # asks for 0 bits
    out = op(Image.new("RGB", (8, 8), (200, 100, 50)))
    assert out.getextrema() == ((0, 0), (0, 0), (0, 0))  # what Pillow < 13 returned: black


# ---------------------------------------------------------------------------------------- learning
def test_a_short_cpu_run_lowers_the_loss_and_beats_chance(learned):
    rec, tmp = learned
    rows = list(T.iter_metrics(tmp / "run"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.15
    assert rec.top1 > 25.0 + 20.0  # 4 classes: chance is 25%
    assert all(r["images_per_s"] > 0 for r in rows)
    assert rec.fidelity == "short" and rec.epochs == 6 and rec.resolution == 64


def test_the_result_record_is_written_and_read_back_by_the_accuracy_predictor(learned, shapes):
    from predictors.accuracy import load_accuracy_model

    rec, tmp = learned
    back = read_results(tmp / "results.jsonl", dataset="shapes", fidelity="short", anchors=False)
    assert len(back) == 1 and back[0].arch_id == tiny().arch_id and back[0].top1 == rec.top1
    assert back[0].extra["num_train_images"] == 4 * N_TRAIN and back[0].extra["images_per_s"] > 0
    model = load_accuracy_model("shapes", proxies=("params",), results=tmp / "results.jsonl", fidelity="short",
                                root=tmp / "predictors")
    assert "1 training results on shapes" in model.describe()
    assert json.loads((tmp / "run" / "result.json").read_text())["top1"] == rec.top1
    again = T.short_train(tiny(), shapes, epochs=6, out_dir=tmp / "run", results_path=tmp / "results.jsonl",
                          batch_size=32, lr=2e-3, scale_min=0.35, workers=0)  # finished: returned, not redone
    assert again == rec and len((tmp / "results.jsonl").read_text().splitlines()) == 1


def test_final_weights_are_safetensors_and_checkpoint_loads_weights_only(learned):
    from safetensors.torch import load_file

    _, tmp = learned
    run = tmp / "run"
    model = build_model(tiny())
    model.load_state_dict(load_file(run / "model.safetensors"))
    ckpt = T.read_checkpoint(run / T.CHECKPOINT)  # torch.load(weights_only=True) inside
    assert ckpt["arch_id"] == tiny().arch_id and ckpt["epoch"] == 6
    assert set(ckpt) >= {"model", "ema", "optimizer", "scheduler", "scaler", "rng", "sampler", "train_config"}
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temporary files


# ---------------------------------------------------------------------------------------- resume
class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("workers", [0, 2])
def test_an_interrupted_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(shapes, tmp_path, workers):
    from safetensors.torch import load_file

    # The full recipe (RandAugment, Mixup/CutMix, erasing, drop path, EMA): every random draw must replay.
    tc = T.TrainConfig(epochs=3, warmup_epochs=1, batch_size=32, workers=workers, max_train_images=128,
                       export_onnx=False)
    cfg = tiny(resolution=32)
    whole = T.train(cfg, shapes, tmp_path / "whole", tc, results_path=None)

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        T.train(cfg, shapes, tmp_path / "cut", tc, results_path=None, on_epoch=stop_after_two)
    assert T.read_checkpoint(tmp_path / "cut" / T.CHECKPOINT)["epoch"] == 2
    resumed = T.train(cfg, shapes, tmp_path / "cut", tc, resume=True, results_path=None)

    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in (T.iter_metrics(tmp_path / "whole"))]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in T.iter_metrics(tmp_path / "cut")]
    assert (whole.top1, whole.top5, whole.top1_ema) == (resumed.top1, resumed.top5, resumed.top1_ema)


# ---------------------------------------------------------------------------------------- bad input
def _bad_trees(root: Path, src: Path) -> dict[str, tuple[Path, str]]:
    img = src / "train" / "circle" / "000.png"
    cases = {}
    for name, files in {
        "no_val": ["train/a/x.png"],
        "class_mismatch": ["train/a/x.png", "train/b/x.png", "val/a/x.png", "val/c/x.png"],
        "flat": ["train/x.png", "val/x.png"],
        "no_images": ["train/a/readme.txt", "val/a/readme.txt"],
    }.items():
        for f in files:
            p = root / name / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(img.read_bytes() if f.endswith(".png") else b"not an image")
    cases["no_val"] = (root / "no_val", "no val/ subfolder")
    cases["class_mismatch"] = (root / "class_mismatch", "hold different classes")
    cases["flat"] = (root / "flat", "directly in train/")
    cases["no_images"] = (root / "no_images", "no images found")
    cases["missing"] = (root / "missing", "no such folder")
    return cases


@pytest.mark.parametrize("case", ["missing", "no_val", "class_mismatch", "flat", "no_images"])
def test_a_bad_data_folder_gets_one_line_naming_it_and_writes_nothing(shapes, tmp_path, capsys, case):
    path, msg = _bad_trees(tmp_path / "trees", shapes)[case]
    with pytest.raises(CommandError, match=msg):
        T.prepare(tiny(), path, tmp_path / "out")
    rc = main(["train", "edgevit_xxs", "--data", str(path), "--out", str(tmp_path / "out"),
               "--results", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err and msg in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.jsonl").exists()


def test_class_count_taken_from_the_data_unless_an_explicit_one_conflicts(shapes, tmp_path):
    plan = T.prepare(tiny(num_classes=1000), shapes, tmp_path / "out", T.TrainConfig.short(batch_size=32))
    assert plan.net_cfg.num_classes == 4 and plan.cfg.num_classes == 1000
    assert any("1000 classes" in n and "4" in n for n in plan.notes)
    with pytest.raises(CommandError, match="--num-classes 10: the data set 'shapes' has 4 classes"):
        T.prepare(tiny(), shapes, tmp_path / "out", T.TrainConfig.short(batch_size=32), num_classes=10)
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_another_architecture_is_refused_and_left_untouched(learned, shapes, capsys):
    _, tmp = learned
    ckpt = tmp / "run" / T.CHECKPOINT
    before = ckpt.read_bytes()
    other = tiny().replace(resolution=96)
    with pytest.raises(CommandError, match=f"checkpoint of architecture {tiny().arch_id}, not {other.arch_id}"):
        T.prepare(other, shapes, tmp / "run", T.TrainConfig.short(6, batch_size=32), resume=True)
    with pytest.raises(CommandError, match="exists; pass --resume"):
        T.prepare(tiny(), shapes, tmp / "run", T.TrainConfig.short(6, batch_size=32))
    rc = main(["train", "edgevit_xxs", "--data", str(shapes), "--out", str(tmp / "run"), "--resume", "--resolution", "64",
               "--results", str(tmp / "other.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "checkpoint of architecture" in err
    assert ckpt.read_bytes() == before and not (tmp / "other.jsonl").exists()


def test_a_file_that_is_not_our_checkpoint_is_refused_without_unpickling(shapes, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / T.CHECKPOINT).write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CommandError, match="not a checkpoint nas train wrote"):
        T.prepare(tiny(), shapes, out, T.TrainConfig.short(batch_size=32), resume=True)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_trains_end_to_end_with_onnx_and_a_record(shapes, tiny_json, tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "results.jsonl"
    args = ["train", str(tiny_json), "--data", str(shapes), "--epochs", "1", "--batch-size", "32", "--workers", "0",
            "--warmup-epochs", "0", "--max-train-images", "128", "--out", str(out), "--results", str(results)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "img/s" in printed and "ONNX" in printed
    for name in ("checkpoint.pt", "metrics.jsonl", "model.safetensors", "model_ema.safetensors", "model.onnx",
                 "result.json", "config.json"):
        assert (out / name).is_file(), name
    (rec,) = read_results(results, anchors=False)
    assert rec.fidelity == "full" and rec.top1_ema is not None and rec.extra["onnx_max_abs_diff"] < 1e-4
    assert main(args) == 2  # would overwrite the checkpoint: refused
    assert main(args + ["--resume"]) == 0 and "already trained" in capsys.readouterr().out
    assert len(results.read_text().splitlines()) == 1


@pytest.fixture
def tiny_json(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(tiny().to_json())
    return path


@pytest.fixture
def search_run(tmp_path) -> Path:
    """A search run folder as ``nas search`` writes it: best.json, pareto.json, family.json."""
    run = tmp_path / "runs" / "search-1"
    run.mkdir(parents=True)
    a, b = tiny(), tiny(resolution=32)
    (run / "best.json").write_text(json.dumps({"config": a.to_dict(), "latency_ms": 1.0}))
    (run / "pareto.json").write_text(json.dumps([{"config": a.to_dict(), "latency_ms": 1.0},
                                                 {"config": b.to_dict(), "latency_ms": 0.5}]))
    (run / "family.json").write_text(json.dumps([{"name": "edgevit_host_0p2ms", "budget_ms": 0.2, "feasible": False},
                                                 {"name": "edgevit_host_0p5ms", "config": b.to_dict(), "budget_ms": 0.5},
                                                 {"name": "edgevit_host_1ms", "config": a.to_dict(), "budget_ms": 1}]))
    return run


def test_pick_reads_best_pareto_and_family_from_a_search_run(search_run, tmp_path):
    (best,), _ = candidates(str(search_run), None, None, "shapes")
    assert best.cfg == tiny() and best.out is None
    pareto, _ = candidates(str(search_run), "pareto", tmp_path / "o", "shapes")
    assert [c.out.name for c in pareto] == [f"00-{tiny().arch_id}", f"01-{tiny(resolution=32).arch_id}"]
    family, skipped = candidates(str(search_run), "family", None, "shapes")
    assert [c.out.name for c in family] == [f"0.5ms-{tiny(resolution=32).arch_id}", f"1ms-{tiny().arch_id}"]
    assert family[0].out.parent == Path("runs/train/search-1-family-shapes")
    assert len(skipped) == 1 and "edgevit_host_0p2ms" in skipped[0]
    (search_run / "pareto.json").unlink()
    with pytest.raises(CommandError, match="no pareto.json"):
        candidates(str(search_run), "pareto", None, "shapes")
    (search_run / "family.json").write_text(json.dumps([{"budget_ms": 1, "feasible": True}]))
    with pytest.raises(CommandError, match="item 0 has no 'config'"):
        candidates(str(search_run), "family", None, "shapes")


def test_cli_pick_pareto_trains_each_point_into_its_own_folder(shapes, search_run, tmp_path):
    out, results = tmp_path / "out", tmp_path / "results.jsonl"
    assert main(["train", str(search_run), "--pick", "pareto", "--data", str(shapes), "--fidelity", "short",
                 "--epochs", "1", "--batch-size", "32", "--workers", "0", "--max-train-images", "64",
                 "--max-val-images", "32", "--out", str(out), "--results", str(results)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"00-{tiny().arch_id}", f"01-{tiny(resolution=32).arch_id}"]
    assert {r.arch_id for r in read_results(results, anchors=False)} == {tiny().arch_id, tiny(resolution=32).arch_id}


# ---------------------------------------------------------------------------------------- torchrun
def test_torchrun_with_two_cpu_processes_trains_and_only_rank_zero_writes(shapes, tiny_json, tmp_path):
    out, results = tmp_path / "out", tmp_path / "results.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nas.train_cli",
           str(tiny_json), "--data", str(shapes), "--epochs", "1", "--batch-size", "16", "--workers", "0",
           "--warmup-epochs", "0", "--max-train-images", "128", "--repeated-aug", "3", "--no-export-onnx",
           "--out", str(out), "--results", str(results)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = read_results(results, anchors=False)  # one record, not one per process
    assert rec.extra["world_size"] == 2 and rec.extra["global_batch"] == 32 and rec.extra["recipe"]["repeated_aug"] == 3
    assert len(list(T.iter_metrics(out))) == 1 and proc.stdout.count("epoch 1 ") == 1
