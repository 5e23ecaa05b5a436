"""``nas farm``: devices, measurements, the store."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from device_farm import DEFAULT_STORE, Measurement, MeasurementStore, get_profile, load_profiles

from .common import CommandError, console

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    farm = groups.add_parser("farm", help="measure candidates on real devices; manage the measurement store")
    cmds = farm.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")

    p = cmds.add_parser("devices", parents=[common], help="known devices, reachability, stored measurements")
    p.set_defaults(func=cmd_devices)

    ray_opts = argparse.ArgumentParser(add_help=False)
    ray_opts.add_argument("--ray", action="store_true", help="schedule measurements as Ray tasks (embedded local Ray)")
    ray_opts.add_argument("--ray-address", help="join a Ray cluster (implies --ray); the device's node runs the tasks")
    ray_opts.add_argument("--quick", action="store_true",
                          help="looser protocol for exploration: one session, CI target 2%%, about 3 s per candidate")

    p = cmds.add_parser("measure", parents=[common, ray_opts], help="measure presets or JSON configurations")
    p.add_argument("--device", required=True)
    p.add_argument("configs", nargs="+", help="presets (edgevit_xxs, ...), JSON files, timm:<name>[@side] (any timm "
                                              "model), or 'held-out' (the networks latency predictors are judged on: "
                                              "search_space.held_out)")
    p.add_argument("--profile-ops", action="store_true", help="also store per-operator times from onnxruntime's profiler")
    p.set_defaults(func=cmd_measure)

    p = cmds.add_parser("sample", parents=[common, ray_opts], help="measure random candidates (resumable)")
    p.add_argument("--device", required=True)
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry-failed", action="store_true", help="measure again candidates whose last attempt failed")
    p.add_argument("--profile-ops", action="store_true")
    p.set_defaults(func=cmd_sample)

    p = cmds.add_parser("calibrate", parents=[common, ray_opts],
                        help="measure the reference set plus samples on a device and fit its latency model")
    p.add_argument("--device", required=True)
    p.add_argument("-n", type=int, default=20, help="measurements in all (10 reference + n-10 random; default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bases", help="comma-separated devices to calibrate against (default: every device with a model)")
    p.add_argument("--blocks", action="store_true",
                   help="measure 20 blocks (stratified by type) instead of networks; map the shipped phones' block "
                        "tables onto the device and fit its phone block model (--bases: the phones to map from)")
    p.set_defaults(func=cmd_calibrate)

    p = cmds.add_parser("export", parents=[common], help="write measurements to CSV")
    p.add_argument("out", type=Path)
    p.add_argument("--device")
    p.add_argument("--op-profiles", type=Path, help="also write the per-operator profiles to this CSV (.gz: compressed)")
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser("renormalise", parents=[common],
                        help="recompute norm_ms of rows written by an earlier version (from their stored ratios)")
    p.set_defaults(func=cmd_renormalise)

    p = cmds.add_parser("import", parents=[common], help="read measurements from CSV (e.g. taken by a phone app)")
    p.add_argument("file", type=Path)
    p.add_argument("--source", help="provenance for rows without one (default import:<file name>)")
    p.add_argument("--op-profiles", type=Path, help="also read per-operator profiles written by 'nas farm export'")
    p.set_defaults(func=cmd_import)

    p = cmds.add_parser("compare", parents=[common, ray_opts],
                        help="EdgeViT against timm's light networks on a device: accuracy-latency plot, Pareto front")
    p.add_argument("--device", required=True, action="append",
                   help="a device (repeat for several: --device host --device host-litert, one plot each)")
    p.add_argument("--family", type=Path, help="a 'nas family' run's family.json: its members join, top-1 estimated")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    p.add_argument("--models", help="comma-separated timm tags of the zoo to use (default: all of nas.compare.ZOO)")
    p.set_defaults(func=cmd_compare)

    p = cmds.add_parser("serve", help="join a Ray cluster as the node that owns a device (opens this machine to it)")
    p.add_argument("--device", required=True)
    p.add_argument("--address", required=True, help="the Ray head, host:port")
    p.add_argument("--num-cpus", type=int)
    p.add_argument("--bind-all", action="store_true",
                   help="required: accept that Ray's processes listen on all interfaces of this machine (Ray has no "
                        "bind option for a cluster node); restrict them with a firewall")
    p.add_argument("--node-ip-address", metavar="IP", help="the address the head reaches this machine at")
    p.set_defaults(func=cmd_serve)


def _reachable(profile) -> str:
    """The "reachable now" cell: yes, or no with the reason."""
    from device_farm.reachability import reachable

    ok, why = reachable(profile)
    return "yes" if ok else f"no ({why})"


def cmd_devices(args: argparse.Namespace) -> int:
    store = MeasurementStore(args.store)
    counts = store.counts()
    t = Table(title=f"devices (store {args.store})")
    for col in ("id", "name", "backend", "reachable now", "ok", "disturbed", "failed", "calibration"):
        t.add_column(col, justify="right" if col in ("ok", "disturbed", "failed") else "left")
    for pid, p in sorted(load_profiles().items()):
        c = counts.get(pid, {})
        cal = p.calibration.get("measured_on") or p.calibration.get("source", "")
        t.add_row(pid, p.name, f"{p.backend}/{p.runtime}", _reachable(p), str(c.get("ok", 0)), str(c.get("disturbed", 0)),
                  str(c.get("failed", 0)), cal)
    console().print(t)
    return 0


def _farm(args: argparse.Namespace):
    from device_farm.measure import Farm, MeasureProtocol

    protocol = MeasureProtocol(profile_ops=getattr(args, "profile_ops", False))
    if getattr(args, "quick", False):
        protocol = dataclasses.replace(protocol, anchors=0, sessions=1, session_seconds=1.5, ratio_ci=0.02, min_repeats=10,
                                       target_ci=0.02, max_seconds=5.0, candle_repeats=7)
    return Farm(MeasurementStore(args.store), protocol=protocol)


def _use_ray(args: argparse.Namespace, device: str) -> bool:
    if not (args.ray or args.ray_address):
        return False
    from device_farm.ray_farm import init_ray

    # the embedded Ray owns this machine's devices: the one asked for when it is local (host, host-litert, ...)
    init_ray(args.ray_address, local_devices=(device,) if get_profile(device).is_local else ("host",))
    return True


def _row(t: Table, m: Measurement, name: str) -> None:
    if m.status == "failed":
        t.add_row(m.arch_id, name, "[red]failed[/]", "", "", "", "", "", m.error or "")
        return
    energy = f"{m.energy_mj:.2f} mJ" if m.energy_mj is not None else "unavailable"
    t.add_row(m.arch_id, name, m.status if m.status == "ok" else f"[yellow]{m.status}[/]", f"{m.median_ms:.3f}",
              f"{m.p10_ms:.2f}-{m.p90_ms:.2f}" if m.p10_ms is not None else "", f"±{m.ci95_rel:.1%}" if m.ci95_rel else "",
              str(m.repeats), f"{m.candle_ratio:.3f}" if m.candle_ratio else "", energy if m.status == "ok" else m.error or "")


def _table(device: str) -> Table:
    t = Table(title=f"measured on {device}")
    for col in ("id", "config", "status", "median ms", "p10-p90", "CI95", "n", "/candle", "energy / note"):
        t.add_column(col)
    return t


def cmd_measure(args: argparse.Namespace) -> int:
    from search_space.held_out import held_out_set
    from search_space.networks import load_network

    profile = get_profile(args.device)
    cfgs, specs = [], []
    for spec in args.configs:
        group = held_out_set() if spec == "held-out" else [load_network(spec)]
        cfgs += group
        specs += [spec] * len(group)
    names = {c.arch_id: (c.name or spec) for c, spec in zip(cfgs, specs)}
    farm = _farm(args)
    con = console()
    t = _table(args.device)
    if _use_ray(args, args.device):
        from device_farm.ray_farm import measure_remote

        results = measure_remote(farm, cfgs, profile)
    else:
        results = (farm.measure(c, profile) for c in cfgs)
    failed = 0
    with con.status(f"measuring {len(cfgs)} configuration(s) on {args.device}..."):
        for m in results:
            _row(t, m, names[m.arch_id])
            failed += m.status == "failed"
    con.print(t)
    return 1 if failed else 0


def cmd_sample(args: argparse.Namespace) -> int:
    from device_farm.sample import sample_and_measure
    from search_space.config import ConfigError

    if args.n < 1:
        raise ConfigError("-n", args.n, "must be an integer >= 1")
    profile = get_profile(args.device)
    farm = _farm(args)
    con = console()
    use_ray = _use_ray(args, args.device)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=con, transient=False) as bar:
        task = bar.add_task(f"sample {args.device}", total=None, last="")

        def on_result(m: Measurement, done: int, todo: int) -> None:
            last = f"{m.arch_id} {m.status}" + (f" {m.median_ms:.2f} ms" if m.median_ms else "")
            bar.update(task, completed=done, total=todo, last=last)

        rep = sample_and_measure(farm, profile, args.n, args.seed, retry_failed=args.retry_failed, use_ray=use_ray,
                                 on_result=on_result)
    con.print(f"planned {rep.planned}, already stored {rep.skipped}, measured now {len(rep.measured)} "
              f"{rep.by_status or ''}; store {args.store}")
    return 0


def cmd_renormalise(args: argparse.Namespace) -> int:
    from device_farm.measure import NORM_VERSION, renormalise

    n = renormalise(MeasurementStore(args.store))
    console().print(f"{n} rows of {args.store} now carry norm_ms as {NORM_VERSION} (previous values kept in "
                    "env.norm_ms_before)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from device_farm.store import export_op_profiles

    store = MeasurementStore(args.store)
    n = store.export_csv(args.out, device=args.device)
    console().print(f"wrote {n} measurements to {args.out}")
    if args.op_profiles:
        k = export_op_profiles(store, args.op_profiles, device=args.device)
        console().print(f"wrote {k} operator timings to {args.op_profiles}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from device_farm.store import read_csv_measurements

    from device_farm.store import put_op_profile_rows, read_op_profiles

    ms = read_csv_measurements(args.file, source=args.source)  # the whole file is checked before the store opens
    ops = read_op_profiles(args.op_profiles) if args.op_profiles else []
    store = MeasurementStore(args.store)
    n = store.put_many(ms)
    if ops:
        put_op_profile_rows(store, ops)
        console().print(f"imported {len(ops)} operator timings from {args.op_profiles}")
    kept = (f" ({len(ms) - n} kept: a clean stored value is never replaced by a failed or disturbed one)"
            if n < len(ms) else "")
    console().print(f"imported {n} measurements from {args.file} into {args.store}{kept}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import ZOO, compare

    models = ZOO
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in {z.tag for z in ZOO} | {z.arch for z in ZOO}]
        if unknown:
            raise CommandError(f"--models {unknown[0]!r}: not in the zoo; allowed: {', '.join(z.arch for z in ZOO)}")
        models = tuple(z for z in ZOO if z.tag in wanted or z.arch in wanted)
    farm = _farm(args)
    con = console()
    code = 0
    for device in args.device:
        profile = get_profile(device)
        reach = _reachable(profile)
        if reach != "yes":
            raise CommandError(f"device {device} is not reachable: {reach}")
        with con.status(f"measuring on {device}...") as status:
            doc = compare(device, farm, args.out, args.family, models,
                          on_result=lambda e, i, n: status.update(f"{device}: {i}/{n} {e.label} {e.status}"))
        t = Table(title=f"{device}: top-1 against latency ({doc['meaning']})")
        for col in ("network", "group", "top-1 %", "latency ms", "front"):
            t.add_column(col, justify="right" if col in ("top-1 %", "latency ms") else "left")
        for e in sorted(doc["entries"], key=lambda e: (e["latency_ms"] is None, e["latency_ms"] or 0)):
            t.add_row(e["label"], e["group"], f"{e['top1']:.1f}" + (" est." if e["estimated"] else ""),
                      f"{e['latency_ms']:.2f}" if e["latency_ms"] is not None else f"[red]{e['status']}[/]",
                      "yes" if e["on_front"] else "")
        con.print(t)
        for name, v in doc["verdict"].items():
            con.print(f"{name}: {'on' if v['on_front_all'] else 'not on'} the front of all networks, "
                      f"{'on' if v['on_front_vs_cnns'] else 'not on'} the front against the CNNs"
                      + (f"; dominated by {', '.join(v['dominated_by'])}" if v["dominated_by"] else ""))
        con.print(f"wrote {args.out}/compare-{device}.json, .png, .md")
        code |= any(e["latency_ms"] is None for e in doc["entries"])
    return int(code)


def cmd_serve(args: argparse.Namespace) -> int:
    from device_farm.ray_farm import binding_note, serve

    get_profile(args.device)
    if not args.bind_all:
        raise CommandError("nas farm serve opens this machine to the network: Ray's processes of a cluster node listen "
                           "on all interfaces (local runs without --ray-address stay on 127.0.0.1); say so with "
                           "--bind-all, and give --node-ip-address IP to choose the address the head uses")
    console().print(binding_note(args.address, args.node_ip_address))
    return serve(args.device, args.address, args.num_cpus, args.node_ip_address)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from predictors.latency import calibrate_device

    profile = get_profile(args.device)
    reach = _reachable(profile)
    if reach != "yes":
        raise CommandError(f"device {args.device} is not reachable: {reach}")
    farm = _farm(args)
    con = console()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"))
    if args.blocks:
        return _calibrate_blocks(args, farm, con, columns)
    with Progress(*columns, console=con) as bar:
        task = bar.add_task(f"calibrate {args.device}", total=args.n, last="")
        try:
            path, adapter = calibrate_device(
                args.device, farm, args.n, args.seed, bases=args.bases.split(",") if args.bases else None,
                on_result=lambda m, d, t: bar.update(task, completed=d, total=t, last=f"{m.arch_id} {m.status}"))
        except ValueError as e:  # bad -n or --bases (NoDataError, a ValueError too, reads the same)
            raise CommandError(str(e)) from None
    con.print(f"saved {path}: few-shot model over {', '.join(adapter.base_names_)} from {adapter.n_train_} "
              f"measurements; leave-one-out relative sigma {adapter.rel_sigma_:.3f}")
    return 0


def _calibrate_blocks(args: argparse.Namespace, farm, con, columns) -> int:
    from predictors.latency import NoDataError
    from predictors.latency.device import calibrate_device_blocks
    from predictors.latency.phone import phone_devices

    sources = args.bases.split(",") if args.bases else None
    allowed = [d for d in phone_devices() if d != args.device]
    bad = [b for b in sources or [] if b not in allowed]
    if bad:
        raise CommandError(f"--bases {bad[0]!r}: with --blocks, phones whose block tables ship, other than the device: "
                           f"{', '.join(allowed)}")
    with Progress(*columns, console=con) as bar:
        task = bar.add_task(f"calibrate {args.device} (blocks)", total=None, last="")
        try:
            path, summary = calibrate_device_blocks(
                args.device, farm, sources=sources,
                on_result=lambda key, m, d, t: bar.update(task, completed=d, total=t, last=f"{key} {m.status}"))
        except (ValueError, NoDataError) as e:  # bad --bases, too few blocks measured
            raise CommandError(str(e)) from None
    con.print(f"saved {path}: phone block model on a table of {summary['keys']} blocks mapped from "
              f"{', '.join(summary['sources'])} by {len(summary['measured'])} blocks measured on {args.device}"
              + (f" ({len(summary['disturbed'])} disturbed, candle-normalised)" if summary["disturbed"] else "")
              + (f"; {len(summary['failed'])} failed" if summary["failed"] else "") + f"; table {summary['table']}")
    return 0
