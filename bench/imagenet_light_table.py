"""Data: the accuracy prior's training table, counted once.

Selects the published ImageNet-1k results of light networks (``public_benchmarks.imagenet_light``:
the rule is in its docstring), adds EdgeViT-XXS/XS/S with the paper's top-1, builds every network
with random weights (timm ``pretrained=False``; EdgeViT from ``search_space``) at the resolution
of its result, and counts its parameters, MACs (torch ``FlopCounterMode`` FLOPs / 2, one image,
eval mode, attention unfused) and depth (convolution, transposed convolution and linear layers
executed in that forward pass). Writes the package data ``predictors/accuracy/data/imagenet_light.json``
(the rows, the rule, how they were counted, the rows dropped and why) and a summary in
``bench/results/imagenet_light_table.json``.

Run: ``python bench/imagenet_light_table.py`` (a few minutes on 2 cores; one torch thread).
"""
from __future__ import annotations

import time

from benchlib import ROOT, now, setup, write_result

setup()
import timm  # noqa: E402
import torch  # noqa: E402

from public_benchmarks import imagenet_light as L  # noqa: E402
from search_space import PRESETS, cost  # noqa: E402
from search_space.files import write_json  # noqa: E402

OUT = ROOT / "predictors" / "accuracy" / "data" / "imagenet_light.json"


def main() -> None:
    torch.set_num_threads(1)
    rows, dropped = L.select_rows()
    rows = rows + L.edgevit_rows()
    out, failed, mismatch = [], [], []
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        torch.manual_seed(0)
        try:
            model = L.build_network(r.arch, r.img_size)
            c = L.count_network(model, r.img_size)
        except Exception as e:  # noqa: BLE001 - a network timm cannot build or run is dropped with its reason
            failed.append((r.model, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"))
            print(f"  {r.model}: FAILED {failed[-1][1]}")
            continue
        if r.family == "edgevit":
            k = cost(PRESETS[r.arch])
            assert (c.params, c.macs) == (k.params, k.macs), (r.arch, c, k)
        elif r.param_count_m and abs(c.params / 1e6 - r.param_count_m) > 0.02 * r.param_count_m + 0.01:
            mismatch.append((r.model, r.param_count_m, c.params / 1e6))
        out.append({**r.__dict__, "params": c.params, "macs": c.macs, "depth": c.depth})
        print(f"{i + 1:3d}/{len(rows)} {r.model:55s} {r.img_size:4d} top1 {r.top1:6.2f} {c.params / 1e6:6.2f} M "
              f"{c.macs / 1e9:6.3f} G depth {c.depth:4d}{' dist' if r.distilled else ''}", flush=True)
    wall = time.perf_counter() - t0
    doc = {
        "what": "published ImageNet-1k top-1 of light networks and EdgeViT, with counted params, MACs and depth: "
                "the training table of predictors.accuracy.prior",
        "source": "timm results-imagenet.csv (huggingface/pytorch-image-models @aa4b585, Apache-2.0; shipped in "
                  "public_benchmarks/data/timm-results); EdgeViT rows: " + L.EDGEVIT_SOURCE,
        "rule": "public_benchmarks.imagenet_light.select_rows (its docstring, rules 1-7); families: "
                + ", ".join(L.FAMILIES) + f"; at most {L.MAX_PARAMS_M:g} M parameters",
        "counted": "timm.create_model(arch, pretrained=False[, img_size=img_size]) after torch.manual_seed(0); "
                   "params = sum of numel; macs = FlopCounterMode FLOPs // 2 of one zero image at img_size, eval "
                   "mode, fused_attn off; depth = forward calls of nn.Conv1d/Conv2d/ConvTranspose2d/Linear in that "
                   "pass; EdgeViT: search_space.build_model (equal to search_space.cost, checked)",
        "command": "python bench/imagenet_light_table.py", "date": now(),
        "versions": {"timm": timm.__version__, "torch": torch.__version__},
        "rows": out, "failed": [{"model": m, "why": w} for m, w in failed],
        "dropped": [{"model": m, "why": w} for m, w in dropped],
    }
    write_json(OUT, doc, indent=1)
    print(f"wrote {OUT.relative_to(ROOT)}: {len(out)} rows ({sum(not r['distilled'] for r in out)} not distilled), "
          f"{len({r['key'] for r in out})} architectures, {len({r['family'] for r in out})} families; "
          f"{len(failed)} failed, {len(dropped)} dropped by the rule; {wall:.0f} s")
    for m, pub, ours in mismatch:
        print(f"  params differ from the published count: {m} published {pub} M, built {ours:.2f} M")
    write_result("imagenet_light_table", {
        "rows": len(out), "not_distilled": sum(not r["distilled"] for r in out),
        "architectures": len({r["key"] for r in out}), "families": sorted({r["family"] for r in out}),
        "failed": doc["failed"], "param_mismatch": [{"model": m, "published_m": p, "built_m": b} for m, p, b in mismatch],
        "wall_s": wall, "output": str(OUT.relative_to(ROOT))})


if __name__ == "__main__":
    main()
