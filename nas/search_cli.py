"""``nas search`` and ``nas family``: the search over the Python API of :mod:`nas.search` and :mod:`nas.family`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .common import CommandError, console

__all__ = ["register"]

#: Flags a resumed run takes from its stored settings; only --trials and --workers may change.
_FIXED_ON_RESUME = ("device", "budget_ms", "budget_mj", "objectives", "sampler", "seed", "ray_address", "no_ray",
                    "storage", "study", "run_id", "out", "measure", "store", "proxies", "predictors", "no_presets", "mode",
                    "confidence")


def _common(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``search`` and ``family``; defaults are applied later so that --resume can spot conflicts."""
    p.add_argument("--device", help="device id (nas farm devices lists them); required unless --resume")
    p.add_argument("--sampler", help="auto (default: tpe up to 300 trials, nsga2 beyond), nsga2, tpe, gp or random")
    p.add_argument("--trials", type=int, help="trials in all (search default 200, family 300)")
    p.add_argument("--seed", type=int, help="sampler seed (default 0): the same seed and --workers give the same trials")
    p.add_argument("--workers", type=int, help="candidates scored in parallel per round (default: the Ray cluster's CPUs)")
    p.add_argument("--ray-address", help="join a Ray cluster ('auto' or host:port) instead of the embedded local Ray")
    p.add_argument("--no-ray", action="store_true", help="score in this process, without Ray")
    p.add_argument("--confidence", type=float, metavar="P",
                   help="a budget must hold with probability P under the latency/energy model's own sigma "
                        "(feasible when mean + z sigma <= budget; 0.9: z = 1.28); default: the mean")
    p.add_argument("--run-id", help="run directory name (default <device>-<budget>ms-<time>)")
    p.add_argument("--out", type=Path, help="parent of the run directory (default runs)")
    p.add_argument("--proxies", help="opt in to zero-cost proxies as the accuracy score (a rank): comma-separated, "
                                     "'default' (params,zico,dss) or 'all'; 'params' is instant. Without it the "
                                     "score is the accuracy prior's estimated ImageNet-1k top-1, corrected by "
                                     "runs/results.jsonl")
    p.add_argument("--predictors", type=Path, help="folder of the latency/energy predictors (default runs/predictors)")


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("search", help="the most accurate EdgeViT within a latency/energy budget on a device")
    _common(p)
    p.add_argument("--budget-ms", type=float, help="latency budget (constraint) in ms")
    p.add_argument("--budget-mj", type=float, help="energy budget (constraint) in mJ; needs the device's energy model")
    p.add_argument("--objectives", help="accuracy,latency (default) or accuracy,latency,energy")
    p.add_argument("--mode", choices=("front", "budget"),
                   help="front (default): every objective at once, budgets as constraints; budget: the score "
                        "alone, budgets as constraints (bench/RESULTS.md: front found the better model)")
    p.add_argument("--storage", help="Optuna storage URL (default: the run's journal.log); postgresql://... to share a study")
    p.add_argument("--study", help="study name in --storage (default: the run id); the same name shares a study")
    p.add_argument("--measure", type=int, metavar="K", help="measure the K best candidates on the device and refit")
    p.add_argument("--store", type=Path, help="measurement store for --measure (default runs/farm/measurements.sqlite)")
    p.add_argument("--no-presets", action="store_true", help="do not seed the study with EdgeViT-XXS/XS/S")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run (--trials may raise its target)")
    p.add_argument("--fidelity", choices=("proxy", "short"), default="proxy",
                   help="short: afterwards, train the top-K feasible candidates a few epochs on --data (successive halving)")
    p.add_argument("--data", type=Path, help="ImageFolder tree (train/, val/) for --fidelity short")
    p.add_argument("--top-k", type=int, default=8, help="candidates --fidelity short trains (default 8)")
    p.add_argument("--short-epochs", default="1,3", help="epochs per successive-halving rung (default 1,3)")
    p.add_argument("--short-resolution", type=int, default=128, help="training side for --fidelity short (default 128)")
    p.add_argument("--short-images", type=int, default=2000, help="training images per short run (default 2000)")
    p.add_argument("--results", type=Path, default=Path("runs/results.jsonl"),
                   help="where short trainings append their result records (default runs/results.jsonl)")
    p.set_defaults(func=cmd_search)

    p = groups.add_parser("family", help="the best candidate per latency budget, exported to ONNX and registered with timm")
    _common(p)
    p.add_argument("--budgets", help="latency budgets in ms, comma-separated (e.g. 15,30,60)")
    p.add_argument("--like", help="'edgevit': the budgets are the predicted latencies of EdgeViT-XXS/XS/S on the device")
    p.set_defaults(func=cmd_family)


# ---------------------------------------------------------------------------------------------- progress
class _ProgressView:
    """Renders :class:`nas.search.SearchProgress` events: a spinner while models load, then bars."""

    def __init__(self, con):
        self.con = con
        self.status = None
        self.bar: Progress | None = None
        self.tasks: dict[str, int] = {}

    def __call__(self, p) -> None:
        if p.phase == "models":
            if self.status is None:
                self.status = self.con.status(p.message)
                self.status.start()
            else:
                self.status.update(p.message)
            return
        self._stop_status()
        if p.phase == "outputs":
            return
        if self.bar is None:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                console=self.con)
            self.bar.start()
        if p.phase not in self.tasks:
            self.tasks[p.phase] = self.bar.add_task(p.phase, total=p.total or None, info="")
        if p.phase == "search":
            best = (f"best feasible {p.best[0]}: score {p.best[1]:.3f} at {p.best[2]:.2f} ms" if p.best
                    else "no feasible candidate yet")
            info = f"{p.unique} distinct, {p.feasible} feasible; {best}"
        else:
            info = p.message
        self.bar.update(self.tasks[p.phase], completed=p.done, total=p.total or None, info=info)

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def close(self) -> None:
        self._stop_status()
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# ---------------------------------------------------------------------------------------------- search
def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def _search_fields(args: argparse.Namespace) -> dict:
    """SearchConfig fields from the flags both commands share (defaults applied here)."""
    if args.no_ray and args.ray_address:
        raise CommandError("--no-ray and --ray-address conflict: scoring runs either in this process or on the cluster")
    out: dict = {"ray": not args.no_ray, "ray_address": args.ray_address, "proxies": _split(args.proxies)}
    for flag, name in (("sampler", "sampler"), ("seed", "seed"), ("workers", "workers")):
        if getattr(args, flag) is not None:
            out[name] = getattr(args, flag)
    if args.predictors is not None:
        out["predictor_root"] = str(args.predictors)
    if args.confidence is not None:
        out["confidence"] = args.confidence
    return out


def _argv(args: argparse.Namespace, command: str) -> list[str]:
    """The command line as typed when run as ``nas``; else (``nas.cli.main([...])``) rebuilt from the flags."""
    if Path(sys.argv[0]).name in ("nas", "__main__.py"):
        return ["nas", *sys.argv[1:]]
    out = ["nas", command]
    for k, v in vars(args).items():
        if k in ("func", "group") or v is None or v is False:
            continue
        out += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return out


def _halving(args: argparse.Namespace):
    """The --fidelity short settings, checked before the search starts (one line on conflict)."""
    if args.fidelity != "short":
        if args.data is not None:
            raise CommandError("--data is only used with --fidelity short")
        return None
    if args.data is None:
        raise CommandError("--fidelity short needs --data PATH (an ImageFolder tree with train/ and val/)")
    if args.top_k < 1:
        raise CommandError(f"--top-k {args.top_k}: allowed: an integer >= 1")
    from .fidelity import HalvingConfig
    from .train import load_data

    try:
        rungs = tuple(int(x) for x in args.short_epochs.split(","))
        hc = HalvingConfig(rungs=rungs, resolution=args.short_resolution, max_train_images=args.short_images)
    except ValueError as e:
        raise CommandError(f"--short-epochs/--short-resolution: {e}") from None
    load_data(args.data)  # a bad data folder fails now, not after the search
    return hc


def cmd_search(args: argparse.Namespace) -> int:
    from .search import SearchConfig, new_run_id, resume_search, run_search

    con = console()
    halving = _halving(args)
    view = _ProgressView(con)
    argv = _argv(args, "search")
    if args.resume is not None:
        given = [f"--{k.replace('_', '-')}" for k in _FIXED_ON_RESUME if getattr(args, k, None) not in (None, False)]
        if given:
            raise CommandError(f"--resume continues {args.resume} with its stored settings: drop {', '.join(given)} "
                               "(only --trials and --workers may change)")
        run_dir = args.resume

        def call():
            return resume_search(args.resume, progress=view, n_trials=args.trials, workers=args.workers, argv=argv)
    else:
        if not args.device:
            from device_farm import load_profiles

            raise CommandError(f"--device is required (known devices: {', '.join(sorted(load_profiles()))})")
        objectives = _split(args.objectives) or ("accuracy", "latency")
        if args.measure is not None and args.measure < 1:
            raise CommandError(f"--measure {args.measure}: give the number of best candidates to measure (>= 1)")
        fields = _search_fields(args)
        cfg = SearchConfig(device=args.device, budget_ms=args.budget_ms, budget_mj=args.budget_mj,
                           objectives=objectives, n_trials=args.trials if args.trials is not None else 200,
                           storage=args.storage, study_name=args.study, measure_top_k=args.measure or 0,
                           store=str(args.store) if args.store else None, seed_presets=not args.no_presets,
                           mode=args.mode or "front", **fields)
        cfg.validate()
        run_dir = (args.out or Path("runs")) / (args.run_id or new_run_id(cfg))
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))

        def call():
            return run_search(cfg, progress=view, argv=argv)
    try:
        result = call()
    except KeyboardInterrupt:
        view.close()
        con.print(f"interrupted; continue with: nas search --resume {run_dir}")
        raise
    finally:
        view.close()
    code = print_result(con, result)
    if halving is not None and result.feasible:
        from .fidelity import rerank_search

        with con.status("low fidelity: training the top candidates...") as status:
            _, ordered = rerank_search(result, args.data, halving, args.top_k, results_path=args.results,
                                       progress=lambda m: status.update(m))
        t = Table(title=f"low fidelity: top {len(ordered)} feasible candidates after successive halving on {args.data}")
        for col in ("rank", "id", "short top-1 %", "epochs", "score", "latency ms"):
            t.add_column(col, justify="left" if col == "id" else "right")
        fid = json.loads((result.run_dir / "fidelity.json").read_text())
        for r in fid["candidates"]:
            t.add_row(str(r["rank"]), r["arch_id"], f"{r['short_top1']:.2f}", str(r["short_epochs"]), f"{r['score']:.3f}",
                      f"{r['latency_ms']:.2f}")
        con.print(t)
        con.print(f"chosen after short training: {ordered[0].arch_id} -> {result.run_dir / 'best.json'} "
                  f"(the proxy's choice: best_proxy.json)")
    return code


def _front_rows(front: list, limit: int = 12) -> list:
    """At most ``limit`` front points, evenly spread along latency, always keeping the chosen one."""
    if len(front) <= limit:
        return front
    idx = {round(i * (len(front) - 1) / (limit - 1)) for i in range(limit)}
    idx |= {i for i, c in enumerate(front) if c.chosen}
    return [front[i] for i in sorted(idx)]


def _figure_meaning(device: str, root: str = "runs/predictors") -> str:
    """What a latency of ``device`` stands for: runtime, threads, cores and delegate of the data its model
    rests on. The profile's ``calibration_summary`` describes the shipped data (nn-Meter's phones); a model
    the user calibrated on their own device (``nas farm calibrate``: few-shot or block-transfer) rests on
    measurements taken through the profile, so its figures mean the profile's live settings."""
    from device_farm import ProfileError, get_profile
    from predictors.latency import load_device_model

    try:
        profile = get_profile(device)
    except ProfileError:
        return "unknown (no device profile)"
    try:
        model = load_device_model(device, root, fit_missing=False)
    except (OSError, ValueError):  # no saved model (NoDataError is a ValueError) or an unreadable one
        model = None
    if model is not None and model.source in ("few-shot", "block-transfer"):
        return (f"{profile.live_summary()} -- calibrated here ({model.source}, {model.created_at[:10]}): "
                f"{model.calibration}")
    return profile.calibration_summary()


def print_result(con, result) -> int:
    from .search import candidate_row
    from .search.outputs import budget_text, evidence, score_header, score_text, validation_line

    cfg = result.config
    dom, unit = result.accuracy_domain, result.accuracy_unit
    budget = " and ".join(x for x in (f"{cfg.budget_ms:g} ms" if cfg.budget_ms else "",
                                      f"{cfg.budget_mj:g} mJ" if cfg.budget_mj else "") if x) or "no budget"
    if cfg.confidence is not None:
        budget += f" at confidence {cfg.confidence:g}"
    t = Table(title=f"Pareto front on {cfg.device} ({budget}): {len(result.pareto)} of {len(result.candidates)} "
                    f"candidates, {result.n_trials} trials")
    cols = ("id", "score", "latency ms", "measured ms", "energy mJ", "params M", "GMACs", "res", "depths", "evidence")
    for col in cols:
        t.add_column(score_header(unit) if col == "score" else col,
                     justify="left" if col in ("id", "depths", "evidence") else "right")
    for c in _front_rows(result.pareto):
        r = candidate_row(c, dom, unit)
        r["evidence"] = f"[yellow]{r['evidence']}[/]" if r["evidence"].startswith("outside") else r["evidence"]
        t.add_row(*(r[k] for k in cols), style="bold green" if c.chosen else None)
    if result.presets:
        t.add_section()
        for name, c in result.presets.items():
            r = candidate_row(c, dom, unit)
            t.add_row(name + ("" if c.feasible else " (over budget)"), *(r[k] for k in cols[1:]), style="dim")
    con.print(t)
    con.print(f"a latency of {cfg.device} means: {_figure_meaning(cfg.device, cfg.predictor_root)}")
    if result.measured:
        m = Table(title=f"predicted against measured on {cfg.device}")
        for col in ("id", "status", "predicted ms", "refit ms", "measured ms", "error", "within budget"):
            m.add_column(col, justify="left" if col in ("id", "status") else "right")
        for d in result.measured:
            ms = d.get("latency_ms", d.get("median_ms"))  # drift-normalised where the store gives it
            m.add_row(d["arch_id"], d["status"], f"{d['predicted_ms']:.2f}", f"{d['refit_ms']:.2f}" if d.get("refit_ms") else "",
                      f"{ms:.2f}" if ms else "", f"{(d['predicted_ms'] - ms) / ms:+.1%}" if ms else "",
                      "" if cfg.budget_ms is None or not ms else ("yes" if ms <= cfg.budget_ms else "[red]no[/]"))
        con.print(m)
    con.print(f"calibration: {result.calibration}")
    con.print(result.accuracy)
    con.print(validation_line(result))
    con.print(result.energy)
    for note in result.notes:
        con.print(f"note: {note}")
    code = 0
    if result.best is not None:
        b = result.best
        lat = (f"measured {b.measured_ms:.2f} ms" if b.latency_known
               else f"predicted {b.latency_ms:.2f} ± {b.latency_std_ms:.2f} ms")
        sure = budget_text(result, b)
        con.print(f"[bold]chosen:[/] {b.arch_id} {score_header(unit)} {score_text(b, unit)}, {lat}"
                  f"{f' ({sure})' if sure else ''}, "
                  f"{b.params / 1e6:.2f} M params, {b.macs / 1e9:.3f} GMACs -> {result.run_dir / 'best.json'}")
        ev = evidence(b, dom)
        if ev:
            con.print(f"[bold yellow]the chosen model lies outside the evidence of its accuracy score[/] ({ev}): "
                      "its score is an extrapolation")
    elif result.fastest is not None:
        f = result.fastest
        bound = " (mean + z sigma)" if cfg.confidence is not None else ""
        con.print(f"[bold red]no candidate meets {budget}[/]; the fastest is {f.arch_id} at "
                  f"{f.latency_bound_ms(cfg.z):.2f} ms{bound} (score {f.score:.3f}); raise the budget to at least that")
        code = 1
    con.print(f"wrote {result.run_dir}/ (report.md, pareto.png, pareto.json, candidates.csv, journal.log); "
              f"continue or extend with: nas search --resume {result.run_dir} --trials N")
    return code


# ---------------------------------------------------------------------------------------------- family
def cmd_family(args: argparse.Namespace) -> int:
    from .family import DEFAULT_FAMILY_TRIALS, run_family
    from .search import candidate_row

    if not args.device:
        from device_farm import load_profiles

        raise CommandError(f"--device is required (known devices: {', '.join(sorted(load_profiles()))})")
    if (args.budgets is None) == (args.like is None):
        raise CommandError("give exactly one of --budgets 15,30,60 and --like edgevit")
    budgets = None
    if args.budgets is not None:
        try:
            budgets = [float(b) for b in _split(args.budgets) or ()]
        except ValueError:
            raise CommandError(f"--budgets {args.budgets!r}: comma-separated numbers of ms, e.g. 15,30,60") from None
    fields = _search_fields(args)
    if args.run_id or args.out:
        fields["run_dir"] = str((args.out or Path("runs")) / (args.run_id or f"{args.device}-family"))
    con = console()
    view = _ProgressView(con)
    argv = _argv(args, "family")
    try:
        fam = run_family(args.device, budgets, args.like, n_trials=args.trials or DEFAULT_FAMILY_TRIALS, progress=view,
                         argv=argv, **fields)
    finally:
        view.close()
    t = Table(title=f"family for {args.device} ({fam.search.n_trials} trials, {len(fam.search.candidates)} candidates)")
    for col in ("timm name", "budget ms", "like", "id", "score", "latency ms", "params M", "GMACs", "ONNX"):
        t.add_column(col, justify="left" if col in ("timm name", "like", "id", "ONNX") else "right",
                     no_wrap=col == "timm name")
    missing = 0
    for m in fam.members:
        if m.candidate is None:
            missing += 1
            f = m.fastest
            t.add_row(m.name, f"{m.budget_ms:g}", m.like or "", "[red]none within budget[/]",
                      "", f"fastest {f.latency_ms:.2f}" if f else "", "", "", "")
            continue
        r = candidate_row(m.candidate, fam.search.accuracy_domain, fam.search.accuracy_unit)
        t.add_row(m.name, f"{m.budget_ms:g}", m.like or "", r["id"], r["score"], r["latency ms"], r["params M"],
                  r["GMACs"], m.onnx.name if m.onnx else "")
    con.print(t)
    con.print(f"calibration: {fam.search.calibration}")
    con.print(fam.search.accuracy)
    con.print(f"wrote {fam.run_dir}/family.json, family.md and family/*.onnx; registered with timm in this process: "
              f"{', '.join(fam.registered) or 'none'} (again elsewhere: nas.family.register_family('"
              f"{fam.run_dir / 'family.json'}'))")
    return 1 if missing else 0
