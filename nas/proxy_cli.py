"""``nas proxy``: zero-cost accuracy proxies of presets or JSON configurations."""
from __future__ import annotations

import argparse
import time

from rich.table import Table

from .common import console

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


def cmd_score(args: argparse.Namespace) -> int:
    import torch

    from predictors import proxies
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
