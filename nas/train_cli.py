"""``nas train``: full training of a configuration, or of a search run's winner, Pareto set or family.

Every candidate is prepared (data, class count, resolution, existing checkpoint) before the first one
trains, so a mistake in the input ends in one line with nothing written. Under ``torchrun`` the same
command trains with DDP (``torchrun --nproc_per_node 8 -m nas.train_cli SPEC --data PATH``); only
rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import CommandError, console

__all__ = ["register", "cmd_train", "candidates"]

PICK_FILES = {"best": "best.json", "pareto": "pareto.json", "family": "family.json"}

#: Recipe options: (TrainConfig field, type, metavar). Each defaults to the recipe's value.
_RECIPE_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("epochs", int, "N"),
    ("batch_size", int, "B"),
    ("lr", float, "LR"),
    ("lr_base", float, "LR"),
    ("weight_decay", float, "WD"),
    ("warmup_epochs", int, "N"),
    ("min_lr", float, "LR"),
    ("clip_grad", float, "NORM"),
    ("aa", str, "POLICY"),
    ("mixup", float, "ALPHA"),
    ("cutmix", float, "ALPHA"),
    ("smoothing", float, "EPS"),
    ("reprob", float, "P"),
    ("drop_path", float, "RATE"),
    ("model_ema_decay", float, "DECAY"),
    ("resolution", int, "R"),
    ("workers", int, "N"),
    ("seed", int, "S"),
    ("repeated_aug", int, "N"),
    ("max_train_images", int, "N"),
    ("max_val_images", int, "N"),
)
_RECIPE_SWITCHES = (("model_ema", "weight EMA"), ("amp", "mixed precision on CUDA"),
                    ("sched_on_updates", "step the lr schedule every update, not every epoch"),
                    ("export_onnx", "write model.onnx at the end"))


def register(groups: argparse._SubParsersAction) -> None:
    from .recipe import TrainConfig

    full = TrainConfig()
    p = groups.add_parser("train", help="train a configuration or a search's winners with the EdgeViT recipe",
                          description="Train with the released EdgeViT recipe (defaults below); every finished "
                                      "training appends a record to the results file the accuracy predictor reads.")
    p.add_argument("spec", help="a preset (edgevit_xxs), a JSON configuration, or a search run folder runs/<run-id>")
    p.add_argument("--data", required=True, help="an ImageFolder tree (PATH/train/<class>/*, PATH/val/<class>/*), "
                                                 "or the root of the --dataset")
    p.add_argument("--dataset", default="", help="a timm data set name (torch/cifar100, hfds/...); default: ImageFolder")
    p.add_argument("--download", action="store_true", help="let timm download the --dataset")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--pick", choices=tuple(PICK_FILES), help="with a run folder: best (default), every Pareto "
                                                            "point, or every family member, each into its own folder")
    p.add_argument("--fidelity", choices=("full", "short"), default="full",
                   help="short: the low-fidelity recipe used to rank candidates (3 epochs, light augmentation, no "
                        "EMA, no ONNX; the options below still override it)")
    p.add_argument("--num-classes", type=int, help="assert the data set's class count (default: taken from the data)")
    p.add_argument("--out", type=Path, help="output folder (default runs/train/<arch_id>-<dataset>/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--results", type=Path, default=None, help="results file to append to (default runs/results.jsonl)")
    recipe = p.add_argument_group("recipe (defaults: the released EdgeViT recipe)")
    for name, typ, metavar in _RECIPE_OPTIONS:
        default = getattr(full, name)
        recipe.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, metavar=metavar, default=None,
                            help=f"default {_show_default(name, default)}")
    for name, what in _RECIPE_SWITCHES:
        recipe.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=f"{what} (default {'on' if getattr(full, name) else 'off'})")
    p.set_defaults(func=cmd_train)


def _show_default(name: str, value: Any) -> str:
    if name == "lr" and value is None:
        return "lr-base x global batch / 512"
    if name == "workers" and value is None:
        return "min(8, cores per process)"
    if name == "resolution" and value is None:
        return "the configuration's"
    return "none" if value is None else str(value)


# ---------------------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    """One configuration to train, with where it came from and its folder (None: the default)."""

    label: str
    cfg: Any
    out: Path | None


def _read_list(path: Path, pick: str) -> list[dict[str, Any]]:
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CommandError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(items, list) or not items:
        raise CommandError(f"{path}: expected a non-empty JSON list of objects with a 'config' key")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CommandError(f"{path}: item {i} is not an object")
        if pick == "family" and not isinstance(item.get("budget_ms"), (int, float)):
            raise CommandError(f"{path}: item {i} has no numeric 'budget_ms'")
        if not isinstance(item.get("config"), dict) and not (pick == "family" and item.get("feasible") is False):
            raise CommandError(f"{path}: item {i} has no 'config' object")
    return items


def _cfg_of(item: dict[str, Any], path: Path, i: int):
    from search_space import EdgeViTConfig
    from search_space.config import ConfigError

    try:
        return EdgeViTConfig.from_dict(item["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}[{i}].config.{e.field}", e.value, e.allowed) from None


def candidates(spec: str, pick: str | None, out: Path | None, dataset_name: str) -> tuple[list[Candidate], list[str]]:
    """The configurations ``spec`` names, and notes on what was left out: one for a preset or JSON
    file; for a search run folder its ``best.json``, every ``pareto.json`` entry, or every feasible
    ``family.json`` member (a budget nothing fitted has no configuration), each in its own subfolder."""
    from search_space import load_config

    run = Path(spec)
    if not run.is_dir():
        if pick is not None:
            raise CommandError(f"--pick {pick}: needs a search run folder (runs/<run-id>), not {spec}")
        return [Candidate(spec, load_config(spec), out)], []
    pick = pick or "best"
    path = run / PICK_FILES[pick]
    if not path.is_file():
        raise CommandError(f"{run}: no {path.name}; --pick {pick} reads the {path.name} that nas search writes "
                           "into its run folder")
    if pick == "best":
        return [Candidate(f"{run.name} best", load_config(path), out)], []
    base = out or Path("runs") / "train" / f"{run.name}-{pick}-{dataset_name.replace('/', '-')}"
    found, notes = [], []
    for i, item in enumerate(_read_list(path, pick)):
        if pick == "family":
            name = item.get("name") or f"{item['budget_ms']:g} ms"
            if not isinstance(item.get("config"), dict):
                notes.append(f"{name}: no candidate fitted its {item['budget_ms']:g} ms budget; nothing to train")
                continue
            cfg = _cfg_of(item, path, i)
            found.append(Candidate(f"{run.name} {name}", cfg, base / f"{item['budget_ms']:g}ms-{cfg.arch_id}"))
        else:
            cfg = _cfg_of(item, path, i)
            found.append(Candidate(f"{run.name} {pick} #{i}", cfg, base / f"{i:02d}-{cfg.arch_id}"))
    if not found:
        raise CommandError(f"{path}: no member has a configuration to train")
    return found, notes


# ---------------------------------------------------------------------------------------- command
def _train_config(args: argparse.Namespace):
    from .recipe import TrainConfig

    changes = {name: getattr(args, name) for name, _, _ in _RECIPE_OPTIONS if getattr(args, name) is not None}
    changes.update({name: getattr(args, name) for name, _ in _RECIPE_SWITCHES if getattr(args, name) is not None})
    if isinstance(changes.get("aa"), str) and changes["aa"].lower() in ("none", ""):
        changes["aa"] = None
    if args.fidelity == "short":
        return TrainConfig.short(**changes)
    return TrainConfig(**changes)


def _header(plan) -> str:
    tc, d = plan.tc, plan.data
    where = f"{plan.env.world} processes" if plan.env.world > 1 else str(plan.env.device)
    start = f", resuming after epoch {plan.start_epoch}" if plan.checkpoint else ""
    ids = plan.cfg.arch_id if plan.cfg == plan.net_cfg else f"{plan.cfg.arch_id} (trained as {plan.net_cfg.arch_id})"
    return (f"{plan.net_cfg.name or 'candidate'} {ids}: {d.name} ({d.num_train} train / {d.num_val} "
            f"val images, {d.num_classes} classes) at {plan.net_cfg.resolution}px, {tc.epochs} epochs, global batch "
            f"{plan.global_batch}, lr {plan.lr:.3g}, {tc.fidelity} recipe, on {where}{start} -> {plan.out_dir}")


def _epoch_line(row: dict[str, Any]) -> str:
    ema = f"  ema {row['ema_top1']:.2f}/{row['ema_top5']:.2f}" if row.get("ema_top1") is not None else ""
    return (f"epoch {row['epoch']}  loss {row['train_loss']:.4f}  lr {row['lr']:.3g}  top1/top5 "
            f"{row['val_top1']:.2f}/{row['val_top5']:.2f}{ema}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s")


def _run_one(plan, results: Path, con, show: bool):
    from .train import run

    if not show:
        return run(plan, results)
    columns = (TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[ips]:.0f} img/s"), TimeElapsedColumn())
    with Progress(*columns, console=con, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch=plan.start_epoch + 1, epochs=plan.tc.epochs, ips=0.0)

        def on_step(info) -> None:
            bar.update(task, completed=info.step, total=info.steps, epoch=info.epoch, ips=info.images_per_s)

        def on_epoch(row: dict[str, Any]) -> None:
            bar.console.print(_epoch_line(row))
            bar.update(task, completed=0)

        return run(plan, results, on_epoch=on_epoch, on_step=on_step)


def _summary(done: list[tuple[Any, Any]], results: Path) -> Table:
    t = Table(title=f"trained (records appended to {results})")
    for col in ("candidate", "arch id", "epochs", "res", "top1", "top5", "EMA top1", "EMA top5", "img/s", "folder"):
        t.add_column(col, justify="left" if col in ("candidate", "folder") else "right")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for cand, rec in done:
        t.add_row(cand.label, rec.arch_id, str(rec.epochs), str(rec.resolution), pct(rec.top1), pct(rec.top5),
                  pct(rec.top1_ema), pct(rec.top5_ema), f"{rec.extra.get('images_per_s', 0):.0f}",
                  str(rec.extra.get("run_dir", "")))
    return t


def cmd_train(args: argparse.Namespace) -> int:
    from predictors.accuracy.results import DEFAULT_RESULTS

    from .train import DistEnv, load_data, prepare, shutdown_distributed

    tc = _train_config(args)
    results = args.results or DEFAULT_RESULTS
    data = load_data(args.data, args.dataset, args.train_split, args.val_split, args.download)
    cands, skipped = candidates(args.spec, args.pick, args.out, data.name)
    # Every candidate is checked before the first one trains: nothing is written on a bad input.
    plans = [prepare(c.cfg, data, c.out, tc, args.resume, args.num_classes) for c in cands]
    show = DistEnv.from_env().is_main
    con = console()
    for note in skipped if show else ():
        con.print(f"note: {note}")
    try:
        done = _train_all(cands, plans, results, con, show)
    finally:
        shutdown_distributed()
    if show:
        con.print(_summary(done, results))
    return 0


def _train_all(cands: list[Candidate], plans: list, results: Path, con: Any, show: bool) -> list[tuple[Any, Any]]:
    """Train each prepared candidate in turn; one already finished (``--resume`` of a completed run)
    is reported from its ``result.json`` instead of being trained or recorded again."""
    done = []
    for cand, plan in zip(cands, plans):
        if show:
            con.print(_header(plan))
            for note in plan.notes:
                con.print(f"note: {note}")
        if plan.finished and show:
            con.print(f"already trained ({plan.out_dir}); not trained or recorded again")
        rec = _run_one(plan, results, con, show)
        done.append((cand, rec))
        if show and "onnx" in rec.extra:
            con.print(f"ONNX: {rec.extra['onnx']} (max |onnxruntime - torch| {rec.extra['onnx_max_abs_diff']:.1e})")
    return done


if __name__ == "__main__":  # torchrun --nproc_per_node N -m nas.train_cli SPEC --data PATH ...
    from .cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))
