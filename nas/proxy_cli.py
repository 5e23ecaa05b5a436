"""``nas proxy``: zero-cost accuracy proxies of presets or JSON configurations, and how well they
rank trained networks on the public benchmarks (``nas proxy eval``)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from .common import CommandError, console

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    proxy = groups.add_parser("proxy", help="zero-cost accuracy proxies")
    cmds = proxy.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = cmds.add_parser("score", help="score presets or JSON configurations with the proxies")
    p.add_argument("configs", nargs="+", help="presets (edgevit_xxs, ...) or JSON files")
    p.add_argument("--proxies", default="default", help="'default', 'all' or a comma-separated list")
    p.add_argument("--resolution", type=int, default=160, help="input side used for scoring (default 160)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_score)

    p = cmds.add_parser("eval", help="correlate every proxy and the default score with trained accuracy on a benchmark",
                        description="Kendall tau (and Spearman rho in --out) of every proxy, #params, MACs and the "
                                    "default score against trained top-1 on ViT-Bench-101 or NAS-Bench-201, with the "
                                    "cost per network; or, with --bench imagenet-light, against the published "
                                    "ImageNet-1k top-1 of light networks timm builds (and EdgeViT), with bootstrap "
                                    "intervals, within and across families. Scoring all networks takes minutes; "
                                    "--scores-from reuses the raw scores of an earlier JSON (bench/results/proxies_*.json) "
                                    "and takes seconds.")
    p.add_argument("--bench", required=True, help="vit-bench-101, nb201 or imagenet-light")
    p.add_argument("--limit", type=int, default=0, help="networks per group: the first N (0: all)")
    p.add_argument("--img-size", type=int, help="input side (default 64 for vit-bench-101, 32 for nb201)")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--workers", type=int, default=1, help="scoring processes, one torch thread each")
    p.add_argument("--cost-networks", type=int, default=10,
                   help="networks per group on which the cost is measured apart (0 with --scores-from: keep the file's)")
    p.add_argument("--scores-from", type=Path, help="reuse the raw scores of an earlier result JSON")
    p.add_argument("--data-dir", type=Path,
                   help="another folder with the layout of the shipped data (vit-bench-101/, nb201-zero-cost/; "
                        "default $EDGEVIT_NAS_SHARED_DATA, else the data shipped with the package)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="imagenet-light: family-bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--families", help="imagenet-light: only these families, comma-separated")
    p.add_argument("--out", type=Path, help="write the result JSON (the bench scripts' layout) here")
    p.set_defaults(func=cmd_eval)


def cmd_score(args: argparse.Namespace) -> int:
    import torch

    from predictors.accuracy import proxies
    from search_space import build_model, load_config
    from search_space.config import ConfigError

    if args.proxies == "default":
        names = list(proxies.DEFAULT_PROXIES)
    elif args.proxies == "all":
        names = list(proxies.ALL_PROXIES)
    else:
        names = [n.strip() for n in args.proxies.split(",") if n.strip()]
        unknown = [n for n in names if n not in proxies.PROXIES]
        if unknown:
            raise ConfigError("--proxies", unknown[0], "allowed: default, all, " + ", ".join(proxies.ALL_PROXIES))
    cfgs = [load_config(c) for c in args.configs]
    table, seconds = {}, {}
    con = console()
    with con.status("scoring..."):
        for cfg in cfgs:
            torch.manual_seed(args.seed)
            model = build_model(cfg)
            t0 = time.perf_counter()
            table[cfg.arch_id] = proxies.score(model, (3, args.resolution, args.resolution), names=names,
                                               batch_size=args.batch_size, num_classes=cfg.num_classes, seed=args.seed)
            seconds[cfg.arch_id] = time.perf_counter() - t0
    agg = proxies.aggregate(table, names) if len(cfgs) > 1 else {}
    t = Table(title=f"proxies at {args.resolution}x{args.resolution}, batch {args.batch_size}, seed {args.seed}",
              caption="aggregate: rank aggregation over the candidates listed (higher is better)" if agg else None)
    t.add_column("config")
    for n in names:
        t.add_column(n, justify="right")
    if agg:
        t.add_column("aggregate", justify="right")
    t.add_column("seconds", justify="right")
    for cfg, spec in zip(cfgs, args.configs):
        row = [cfg.name or spec] + [f"{table[cfg.arch_id][n]:.4g}" for n in names]
        if agg:
            row.append(f"{agg[cfg.arch_id]:.3f}")
        t.add_row(*row, f"{seconds[cfg.arch_id]:.2f}")
    con.print(t)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from public_benchmarks import proxy_eval
    from search_space.config import ConfigError
    from search_space.files import FileFormatError

    if args.bench == "imagenet-light":
        return _eval_imagenet(args)
    if args.bench not in proxy_eval.BENCHES:
        raise ConfigError("--bench", args.bench, "allowed: " + ", ".join((*proxy_eval.BENCHES, "imagenet-light")))
    if args.limit < 0:
        raise ConfigError("--limit", args.limit, "a whole number >= 0 (0: every network)")
    if args.workers < 1:
        raise ConfigError("--workers", args.workers, "a whole number >= 1")
    if args.cost_networks < 0:
        raise ConfigError("--cost-networks", args.cost_networks, "a whole number >= 0")
    if args.scores_from is not None and not args.scores_from.is_file():
        raise CommandError(f"--scores-from {args.scores_from}: no such file")
    con = console()
    try:
        with con.status("scoring...") as status:
            result = proxy_eval.evaluate(
                args.bench, limit=args.limit, img_size=args.img_size, batch_size=args.batch_size,
                workers=args.workers, scores_from=args.scores_from, cost_networks=args.cost_networks,
                data_dir=args.data_dir,
                progress=lambda group, done, total: status.update(f"scoring {group}: {done}/{total}"))
    except (proxy_eval.DataFileError, proxy_eval.ScoresFileError, FileFormatError) as e:
        raise CommandError(str(e)) from None
    except json.JSONDecodeError as e:
        raise CommandError(f"--scores-from {args.scores_from}: not JSON ({e})") from None
    print_eval(result, con)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        con.print(f"wrote {args.out}")
    return 0


def _eval_imagenet(args: argparse.Namespace) -> int:
    """``--bench imagenet-light``: :func:`public_benchmarks.imagenet_light.evaluate`, printed."""
    from public_benchmarks import imagenet_light as L
    from search_space.config import ConfigError
    from search_space.files import FileFormatError

    for flag in ("img_size", "batch_size", "data_dir"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')}", getattr(args, flag),
                              f"not used by imagenet-light (fixed: {L.PROXY_SIDE} px, batch {L.BATCH}; shipped table)")
    for flag, lo in (("limit", 0), ("workers", 1), ("bootstrap", 10)):
        if getattr(args, flag) < lo:
            raise ConfigError(f"--{flag}", getattr(args, flag), f"a whole number >= {lo}")
    if args.scores_from is not None and not args.scores_from.is_file():
        raise CommandError(f"--scores-from {args.scores_from}: no such file")
    fams = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    con = console()
    try:
        with con.status("scoring...") as status:
            result = L.evaluate(limit=args.limit, workers=args.workers, scores_from=args.scores_from,
                                n_boot=args.bootstrap, families=fams,
                                progress=lambda group, done, total: status.update(f"scoring {group}: {done}/{total}"))
    except (L.ScoresFileError, FileFormatError) as e:
        raise CommandError(str(e)) from None
    except json.JSONDecodeError as e:
        raise CommandError(f"--scores-from {args.scores_from}: not JSON ({e})") from None
    print_imagenet(result, con)
    if args.out:
        from search_space.files import write_json

        write_json(args.out, result.to_dict(), indent=1)
        con.print(f"wrote {args.out}")
    return 0


def print_imagenet(result, con) -> None:
    """One table per set (main, with distilled): Kendall, Spearman, within and across families, minus #params."""
    src = f"scores from {result.scores_from}" if result.scores_from else "scored now"
    for setname, rows in result.stats.items():
        n = next(iter(rows.values())).n
        t = Table(title=f"imagenet-light ({setname}): {n} networks, published ImageNet-1k top-1; proxies at "
                        f"128x128, batch 8, random weights", title_justify="left", caption_justify="left",
                  caption=f"{src}; [95% bootstrap over families, {result.n_boot} resamples]; within/across: Kendall "
                          "over pairs of one family / of two; bold: what nas search scores with by default")
        for col in ("score", "Kendall tau", "Spearman rho", "within-family tau", "across-family tau", "tau - #params"):
            t.add_column(col, justify="left" if col == "score" else "right")
        for r, st in rows.items():
            t.add_row(r, f"{st.kendall:+.2f} [{st.kendall_ci[0]:+.2f},{st.kendall_ci[1]:+.2f}]",
                      f"{st.spearman:+.2f} [{st.spearman_ci[0]:+.2f},{st.spearman_ci[1]:+.2f}]",
                      f"{st.within:+.2f} [{st.within_ci[0]:+.2f},{st.within_ci[1]:+.2f}]",
                      f"{st.across:+.2f} [{st.across_ci[0]:+.2f},{st.across_ci[1]:+.2f}]",
                      f"{st.minus_params:+.2f} [{st.minus_params_ci[0]:+.2f},{st.minus_params_ci[1]:+.2f}]",
                      style="bold" if r == result.search_default else None)
        con.print(t)
    if result.failed:
        con.print(f"not scored ({len(result.failed)}): " + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))


def print_eval(result, con) -> None:
    """One table per group: a row per proxy and the default (bold), Kendall tau per target, cost per network."""
    wins = result.beats_params()
    src = f"scores from {result.scores_from}" if result.scores_from else "scored now"
    for g in result.groups.values():
        t = Table(title=f"{g.name}: {g.n} networks at {result.img_size}x{result.img_size}, batch {result.batch_size}; "
                        "Kendall tau against trained top-1", title_justify="left", caption_justify="left",
                  caption=f"{src}, seed {result.seed}; s/net (seconds per network, 1 thread): {g.cost_source}")
        t.add_column("proxy")
        for target in g.targets:
            t.add_column(target.replace("_", "\n"), justify="right")
        t.add_column("s/net", justify="right")
        t.add_column("nan", justify="right")
        for r in result.rows:
            cells = [f"{g.correlations[r][target].kendall:+.3f}" for target in g.targets]
            t.add_row(r, *cells, f"{g.seconds_per_network[r]:.3f}", str(g.nan_count[r]),
                      style="bold" if r == result.default_name else None)
        con.print(t)
        d, p = g.correlations[result.default_name], g.correlations["params"]
        con.print(f"{result.default_name} beats #params: " + ", ".join(
            f"{target} {'[green]yes[/]' if wins[g.name][target] else '[red]no[/]'} "
            f"({d[target].kendall - p[target].kendall:+.3f})" for target in g.targets))
        con.print()
    if result.stored_check:
        datasets = result.groups["nb201"].targets
        t = Table(title="Spearman rho of our score against NASLib's stored score of the same name",
                  title_justify="left")
        t.add_column("proxy")
        for ds in datasets:
            t.add_column(ds, justify="right")
        for n, r in result.stored_check.items():
            t.add_row(n, *(f"{r[ds]:.3f}" for ds in datasets))
        con.print(t)
