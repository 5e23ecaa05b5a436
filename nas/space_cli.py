"""``nas space``: look at, sample, validate and export configurations of the search space."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from .common import console
from search_space import DEFAULT_SPACE, PRESETS, ConfigError, EdgeViTConfig, cost, load_config

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    space = groups.add_parser("space", help="inspect, sample, validate and export configurations")
    cmds = space.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    p = cmds.add_parser("show", help="per-stage table of a preset or JSON configuration")
    p.add_argument("config", help=f"a preset ({', '.join(PRESETS)}) or a JSON file")
    p.add_argument("--json", action="store_true", help="print the canonical configuration and its cost as JSON")
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser("sample", help="draw random configurations from the default space")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write each one to OUT/<id>.json")
    p.add_argument("--json", action="store_true", help="print one canonical JSON configuration per line")
    p.set_defaults(func=cmd_sample)

    p = cmds.add_parser("validate", help="check JSON configurations; exit 2 on the first invalid one")
    p.add_argument("configs", nargs="+", help="JSON files or preset names")
    p.set_defaults(func=cmd_validate)

    p = cmds.add_parser("export", help="export a configuration to ONNX and/or TFLite and check it against PyTorch")
    p.add_argument("config", help="a preset, a JSON file, or timm:<name>[@side] (any timm model)")
    p.add_argument("--onnx", type=Path, help="output .onnx path")
    p.add_argument("--tflite", type=Path, help="output .tflite path (litert-torch; the optional extra [tflite])")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser("size", help="the default ranges and the number of distinct architectures")
    p.set_defaults(func=cmd_size)


def _fmt_m(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _fmt_g(n: int) -> str:
    return f"{n / 1e9:.3f}G"


_CODES = {"lgl": "B", "local": "L", "global": "G"}  # B: both halves


def _codes(cfg: EdgeViTConfig) -> str:
    return "|".join("".join(_CODES[k] for k in s.blocks) for s in cfg.stages)


def _blocks(kinds: tuple[str, ...]) -> str:
    out, prev, run = [], None, 0
    for k in kinds + (None,):
        if k == prev:
            run += 1
            continue
        if prev is not None:
            out.append(prev if run == 1 else f"{prev}×{run}")
        prev, run = k, 1
    return " ".join(out)


def stage_table(cfg: EdgeViTConfig) -> Table:
    c = cost(cfg)
    title = f"{cfg.name or 'candidate'}  id {cfg.arch_id}  {cfg.resolution}x{cfg.resolution}, {cfg.num_classes} classes"
    t = Table(title=title, caption="tokens: tokens Q, K and V come from, (side / r)^2")
    for col in ("stage", "map", "width", "blocks", "heads", "r", "k", "mlp", "tokens", "params", "MACs"):
        t.add_column(col, justify="left" if col == "blocks" else "right")
    for st, sc in zip(cfg.stages, c.stages):
        t.add_row(
            str(sc.index + 1),
            f"{sc.side}x{sc.side}",
            str(st.width),
            _blocks(st.blocks),
            "-" if st.heads is None else str(st.heads),
            "-" if st.sr_ratio is None else str(st.sr_ratio),
            "-" if st.kernel_size is None else str(st.kernel_size),
            str(st.mlp_ratio),
            "-" if sc.attention_tokens is None else str(sc.attention_tokens),
            _fmt_m(sc.params),
            _fmt_g(sc.macs),
        )
    t.add_row("head", "", "", "", "", "", "", "", "", _fmt_m(c.head_params), _fmt_g(c.head_macs))
    t.add_row("total", "", "", "", "", "", "", "", "", _fmt_m(c.params), _fmt_g(c.macs), style="bold")
    return t


def _summary(cfg: EdgeViTConfig) -> dict:
    c = cost(cfg)
    return {"id": cfg.arch_id, "params": c.params, "macs": c.macs, "config": cfg.to_dict()}


def cmd_show(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.json:
        print(json.dumps(_summary(cfg), indent=2))
        return 0
    con = console()
    con.print(stage_table(cfg))
    if not DEFAULT_SPACE.contains(cfg):
        try:
            DEFAULT_SPACE.check(cfg)
        except ConfigError as e:
            con.print(f"note: outside the default search space: {e}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError("-n", args.n, "must be an integer >= 1")
    cfgs = DEFAULT_SPACE.sample_random(args.n, seed=args.seed)
    if args.out:
        from search_space.files import atomic_write

        for cfg in cfgs:  # atomic: a full disk leaves whole files only, never a torn one
            atomic_write(args.out / f"{cfg.arch_id}.json", cfg.to_json() + "\n")
    if args.json:
        for cfg in cfgs:
            print(cfg.to_json(indent=None))
        return 0
    t = Table(title=f"{args.n} random candidates, seed {args.seed}")
    t.caption = "blocks per stage: B = lgl (LocalAgg + attention), L = local, G = global"
    for col in ("id", "res", "widths", "blocks", "params", "MACs"):
        t.add_column(col, justify="left" if col in ("id", "blocks") else "right")
    for cfg in cfgs:
        c = cost(cfg)
        t.add_row(cfg.arch_id, str(cfg.resolution), ",".join(map(str, cfg.widths)), _codes(cfg),
                  _fmt_m(c.params), _fmt_g(c.macs))
    con = console()
    con.print(t)
    if args.out:
        con.print(f"wrote {len(cfgs)} configurations to {args.out}/")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    con = console()
    for spec in args.configs:
        cfg = load_config(spec)  # its errors name the file and the field
        c = cost(cfg)
        where = "inside the default search space"
        try:
            DEFAULT_SPACE.check(cfg)
        except ConfigError as e:
            where = f"valid, but outside the default search space: {e}"
        con.print(f"{spec}: ok, id {cfg.arch_id}, {_fmt_m(c.params)} params, {_fmt_g(c.macs)} MACs; {where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search_space.export import check_onnx, export_onnx
    from search_space.networks import as_network, load_network

    if args.onnx is None and args.tflite is None:
        raise ConfigError("--onnx/--tflite", None, "give at least one output file (--onnx F.onnx, --tflite F.tflite)")
    net = as_network(load_network(args.config))
    model = net.build(seed=0)
    con = console()
    ok = True
    if args.onnx is not None:
        path = export_onnx(model, args.onnx, opset=args.opset, input_shape=net.input_shape)
        con.print(f"wrote {path} (id {net.arch_id}, opset {args.opset})")
        if not args.no_check:
            chk = check_onnx(model, path, input_shape=net.input_shape)
            con.print(f"onnxruntime vs PyTorch: max |diff| = {chk.max_abs_diff:.2e} "
                      f"({'ok' if chk.ok else 'MISMATCH'}, {chk.num_nodes} nodes)")
            ok &= chk.ok
    if args.tflite is not None:
        from search_space.tflite import check_tflite, export_tflite

        path = export_tflite(model, args.tflite, input_shape=net.input_shape)
        con.print(f"wrote {path} (id {net.arch_id}, litert-torch, float32)")
        if not args.no_check:
            chk = check_tflite(model, path, input_shape=net.input_shape)
            con.print(f"LiteRT vs PyTorch: max |diff| = {chk.max_abs_diff:.2e} "
                      f"({'ok' if chk.ok else 'MISMATCH'}, {chk.num_nodes} operators)")
            ok &= chk.ok
    return 0 if ok else 1


def cmd_size(args: argparse.Namespace) -> int:
    d = DEFAULT_SPACE.describe()
    con = console()
    t = Table(title="default search space")
    t.add_column("range")
    t.add_column("values")
    for key in ("resolutions", "depths", "heads", "head_dims", "mlp_ratios", "sr_ratios", "kernel_sizes", "block_kinds"):
        t.add_row(key, json.dumps(d[key]))
    for i, w in enumerate(d["widths"]):
        t.add_row(f"widths stage {i + 1}", f"{len(w)} values, {w[0]}..{w[-1]}")
    con.print(t)
    con.print(f"distinct architectures: {d['size']:,} (10^{d['log10_size']})")
    return 0
