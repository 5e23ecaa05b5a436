"""``nas predictor``: train, evaluate and inspect a device's latency/energy predictor."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from device_farm import DEFAULT_STORE, MeasurementStore, get_profile

from .common import CommandError, console

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    pred = groups.add_parser("predictor", help="latency/energy predictors learned from measurements")
    cmds = pred.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", required=True)
    common.add_argument("--target", default="latency", choices=("latency", "energy"))
    common.add_argument("--store", type=Path, default=DEFAULT_STORE)

    p = cmds.add_parser("train", parents=[common], help="compare methods by cross-validation, fit the best, save it")
    p.add_argument("--method", default="auto", help="auto (best by CV), macs, linear, kernel or graph")
    p.add_argument("--out", type=Path, help="default runs/predictors/<device>-<target>.json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = cmds.add_parser("eval", parents=[common], help="cross-validated comparison of every method, nothing saved")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    p = cmds.add_parser("predict", help="predicted latency of presets or JSON configurations on a device")
    p.add_argument("--device", required=True)
    p.add_argument("configs", nargs="+")
    p.set_defaults(func=cmd_predict)

    p = cmds.add_parser("show", help="what a saved predictor is, and how it compared")
    p.add_argument("path", type=Path, nargs="?")
    p.add_argument("--device")
    p.add_argument("--target", default="latency", choices=("latency", "energy"))
    p.set_defaults(func=cmd_show)


def comparison_table(comparison: dict[str, dict[str, float]], title: str, chosen: str | None = None) -> Table:
    t = Table(title=title)
    for col in ("method", "n", "within 5%", "within 10%", "RMSE", "Kendall tau", "Spearman"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for m, r in comparison.items():
        t.add_row(m + (" (chosen)" if m == chosen else ""), str(r["n"]), f"{r['within_5']:.1%}", f"{r['within_10']:.1%}",
                  f"{r['rmse']:.3f}", f"{r['kendall_tau']:.3f}", f"{r['spearman']:.3f}",
                  style="bold" if m == chosen else None)
    return t


def held_out_table(held_out: dict, chosen: str | None = None) -> Table:
    """Each method fitted on the training rows and judged on the held-out networks, after one scalar rescale."""
    t = Table(title=f"held-out networks never trained on (search_space.held_out, n={held_out.get('n', 0)}), after one "
                    "scalar rescale; as predicted in brackets")
    for col in ("method", "within 5%", "within 10%", "Kendall tau", "scale"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for m, r in held_out.items():
        if not isinstance(r, dict):
            continue
        a, b = r["rescaled"], r["as_predicted"]
        t.add_row(m + (" (chosen)" if m == chosen else ""), f"{a['within_5']:.1%} ({b['within_5']:.1%})",
                  f"{a['within_10']:.1%} ({b['within_10']:.1%})", f"{a['kendall_tau']:.3f}", f"{r['scale']:.3f}",
                  style="bold" if m == chosen else None)
    return t


def cmd_train(args: argparse.Namespace) -> int:
    from predictors.latency import NoDataError, default_path, fit_phone_model, train

    profile = get_profile(args.device)
    try:
        p = train(MeasurementStore(args.store), args.device, args.target, args.method, seed=args.seed)
    except NoDataError as e:
        if args.target == "latency" and profile.calibration.get("source") == "nn-meter":
            con = console()
            with con.status(f"{e}; fitting the nn-Meter block model of {args.device} instead..."):
                out = fit_phone_model(args.device, (args.out.parent if args.out else "runs/predictors"))
            con.print(f"{args.device}: no measurements yet; saved the block-latency model {out} "
                      f"(calibration: {profile.calibration.get('measured_on')}). 'nas predictor show --device "
                      f"{args.device}' lists its held-out accuracy.")
            return 0
        raise
    except ValueError as e:
        raise CommandError(str(e)) from None
    out = p.save(args.out or default_path(args.device, args.target))
    con = console()
    con.print(comparison_table(p.comparison, f"{args.device} {args.target}: 5-fold cross-validation, "
                                             f"{p.n_measurements} measurements", p.method))
    if p.held_out:
        con.print(held_out_table(p.held_out, p.method))
    else:
        con.print(f"no held-out figures: measure the held-out networks with 'nas farm measure --device {args.device} "
                  "held-out' (they are never trained on)")
    con.print(f"saved {out} (method {p.method}, data {p.data_hash}, relative sigma {p.estimator.rel_sigma_:.3f})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from predictors.latency import METHODS, cross_validate, dataset

    get_profile(args.device)
    cfgs, y, _ = dataset(MeasurementStore(args.store), args.device, args.target)
    if len(y) < 10:
        raise CommandError(f"device {args.device}: {len(y)} clean {args.target} measurements, need >= 10")
    comp = {m: cross_validate(m, cfgs, y, seed=args.seed)[0].as_dict() for m in METHODS}
    console().print(comparison_table(comp, f"{args.device} {args.target}: 5-fold cross-validation"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from predictors.latency import DeviceModel, default_path
    from predictors.latency.phone import PhoneLatencyPredictor

    path = args.path or (default_path(args.device, args.target) if args.device else None)
    if path is None:
        raise CommandError("give a predictor path or --device")
    try:
        p = DeviceModel.load(path)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from None
    con = console()
    con.print(f"{path}: {p.device} {p.target} model ({p.source}), method {p.method}, created {p.created_at}")
    con.print(f"calibration: {p.calibration}")
    est = p.estimator
    if isinstance(est, PhoneLatencyPredictor):
        t = Table(title="held-out blocks (random 20%), chosen regressor vs linear fit on MACs and params")
        for col in ("block type", "regressor", "n", "within 5%", "within 10%", "RMSE ms", "Kendall tau",
                    "linear: within 10%"):
            t.add_column(col)
        for btype, r in est.heldout_.items():
            m, lin = r["model"], r.get("linear_macs_params", {})
            t.add_row(btype, r["kind"], str(m["n"]), f"{m['within_5']:.1%}", f"{m['within_10']:.1%}",
                      f"{m['rmse']:.4f}", f"{m['kendall_tau']:.3f}", f"{lin.get('within_10', float('nan')):.1%}")
        con.print(t)
        return 0
    if p.comparison:
        con.print(comparison_table(p.comparison, "in distribution: 5-fold cross-validation at training time", p.method))
    if p.held_out:
        con.print(held_out_table(p.held_out, p.method))
    elif p.source == "measured":
        con.print(f"no held-out figures: measure the held-out networks with 'nas farm measure --device {p.device} "
                  "held-out' and retrain")
    noise = _noise_floor()
    if noise and p.device == "host":
        con.print(f"instrument repeat on this machine kind ({noise['pairs']} pairs of runs >= 10 min apart, "
                  f"{noise['first']} to {noise['last']}; bench/farm_noise.py --tally): normalised latency differs "
                  f"between two runs by {noise['median_range'][0]:.1%}-{noise['median_range'][1]:.1%} median, "
                  f"{noise['p90_range'][0]:.1%}-{noise['p90_range'][1]:.1%} p90; within 1.5% / 4% on {noise['met']} "
                  f"of {noise['pairs']} pairs")
    if hasattr(est, "kernel_costs"):
        con.print("kernel costs (ms per GMAC / per M elements / per launch): " + json.dumps(
            {k: round(v, 4) for k, v in est.kernel_costs().items()}))
    return 0


def _noise_floor() -> dict | None:
    """The instrument's repeat over every pair bench/farm_noise.py recorded in this checkout (its ``--tally``,
    ``bench/results/farm_noise_tally.json``; None when absent): one pair is one machine state, so the
    range over the pairs is what a figure can be checked to, never the latest pair alone."""
    path = Path(__file__).resolve().parents[1] / "bench" / "results" / "farm_noise_tally.json"
    try:
        d = json.loads(path.read_text())
        return {"pairs": int(d["pairs"]), "met": int(d["met"]), "median_range": d["median_range"],
                "p90_range": d["p90_range"], "first": d["first"][:10], "last": d["last"][:10]}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def cmd_predict(args: argparse.Namespace) -> int:
    from predictors.latency import load_device_model
    from search_space import cost, load_config

    cfgs = [load_config(c) for c in args.configs]
    con = console()
    with con.status(f"loading the latency model of {args.device}..."):
        model = load_device_model(args.device)
    mean, std = model.predict(cfgs)
    t = Table(title=f"predicted latency on {args.device}")
    for col in ("id", "config", "GMACs", "latency ms", "± std"):
        t.add_column(col)
    for cfg, spec, m, s in zip(cfgs, args.configs, mean, std):
        t.add_row(cfg.arch_id, cfg.name or spec, f"{cost(cfg).gmacs:.3f}", f"{m:.2f}", f"{s:.2f}")
    con.print(t)
    con.print(f"calibration: {model.calibration}")
    return 0
