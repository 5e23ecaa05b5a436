"""ViT-Bench-101 loader and network builders (public_benchmarks/vitbench.py), and the shipped data
(public_benchmarks/data.py)."""
import gzip
import math
import re

import pytest
import timm
import torch

from public_benchmarks.data import ENV, SHIPPED, DataFileError, check_shipped, data_path
from public_benchmarks.vitbench import (
    ACC_KEYS, SPACES, AutoFormerNet, PiTNet, VitBenchRecord, build_autoformer, build_pit,
    build_vitbench, count_params, load_vitbench, vitbench_dir,
)

AF = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12}
PIT_TI = {"base_dim": 32, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}


def _copy_in_order(src, dst, rename=None):
    """Load ``src``'s tensors into ``dst`` by (renamed) parameter name; every name must be used."""
    sd = {(rename(k) if rename else k): v for k, v in src.state_dict().items()}
    missing, unexpected = dst.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


# ------------------------------------------------------------------------------ no data needed


def test_autoformer_equals_deit_tiny_from_timm():
    """Uniform 192-wide, 12 layers, 3 heads, ratio 4 is DeiT-Ti: same tensors and, with the class-token
    head, the same function as timm's implementation."""
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
    net = build_autoformer(AF, num_classes=10, pool="cls").eval()
    assert count_params(net) == count_params(ref)

    def rename(k):
        return k.replace("patch_embed.proj.", "patch_embed.")
    _copy_in_order(ref, net, rename)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-4, rtol=1e-4)
    assert count_params(build_autoformer(AF, num_classes=1000)) == 5_717_416


def test_pit_equals_pit_ti_from_timm():
    ref = timm.create_model("pit_ti_224", pretrained=False, num_classes=10).eval()
    net = build_pit(PIT_TI, num_classes=10).eval()
    assert count_params(net) == count_params(ref)

    def rename(k):
        k = k.replace("patch_embed.conv.", "patch_embed.")
        m = re.match(r"transformers\.(\d+)\.pool\.(.*)", k)
        if m:
            return f"pools.{int(m.group(1)) - 1}.{m.group(2)}"
        return re.sub(r"^transformers\.", "stages.", k)
    _copy_in_order(ref, net, rename)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-4, rtol=1e-4)


def test_per_layer_heads_and_ratios_are_applied():
    arch = {"hidden_dim": 216, "depth": 3, "mlp_ratio": [3.5, 4.0, 3.5], "num_heads": [3, 4, 4]}
    net = build_autoformer(arch)
    assert [b.attn.num_heads for b in net.blocks] == [3, 4, 4]
    assert [b.attn.head_dim for b in net.blocks] == [72, 54, 54]
    assert [b.mlp.fc1.out_features for b in net.blocks] == [756, 864, 756]


def test_params_grow_with_width_and_depth():
    def af(dim, depth):
        return count_params(build_autoformer(
            {"hidden_dim": dim, "depth": depth, "mlp_ratio": [3.5] * depth, "num_heads": [3] * depth}))
    assert af(192, 12) < af(216, 12) < af(240, 12)
    assert af(192, 12) < af(192, 13) < af(192, 14)
    # one 192-wide layer with ratio 3.5: LN 2*2d + qkv 3d^2+3d + proj d^2+d + mlp 2*3.5d^2 + 4.5d
    d = 192
    assert af(192, 13) - af(192, 12) == 4 * d + 4 * d * d + 4 * d + 7 * d * d + int(3.5 * d) + d

    def pit(base, depth):
        return count_params(build_pit({"base_dim": base, "mlp_ratio": 4, "depth": depth, "num_heads": [2, 4, 8]}))
    assert pit(16, [2, 6, 4]) < pit(24, [2, 6, 4]) < pit(40, [2, 6, 4])
    assert pit(16, [2, 6, 4]) < pit(16, [3, 6, 4]) < pit(16, [3, 8, 6])


def test_pit_pooling_shapes():
    net = build_pit({"base_dim": 16, "mlp_ratio": 2, "depth": [1, 4, 2], "num_heads": [2, 2, 8]})
    assert net.dims == [32, 32, 128] and tuple(net.pos_embed.shape) == (1, 32, 27, 27)
    x = net.pos_embed.expand(1, -1, -1, -1)
    cls = net.cls_token
    sides = []
    for pool in net.pools:
        x, cls = pool(x, cls)
        sides.append(x.shape[-1])
    assert sides == [14, 7] and cls.shape[-1] == 128


def test_bad_arch_rejected():
    with pytest.raises(ValueError):
        build_autoformer({"hidden_dim": 192, "depth": 3, "mlp_ratio": [4.0] * 2, "num_heads": [3] * 3})
    with pytest.raises(ValueError):
        build_pit({"base_dim": 16, "mlp_ratio": 2, "depth": [1, 4, 2], "num_heads": [8, 4, 2]})
    with pytest.raises(ValueError):
        load_vitbench("nasbench")


def test_other_class_counts_and_mean_vs_cls_pool():
    net = build_autoformer(AF, num_classes=102)
    assert isinstance(net, AutoFormerNet) and net.pool == "mean"
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 102)
    assert isinstance(build_vitbench("pit", PIT_TI, num_classes=4), PiTNet)


# ---------------------------------------------------------------------------------- with data


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_record_parses(name):
    recs = load_vitbench(name)
    assert len(recs) == 100
    assert [r.index for r in recs] == list(range(100))
    for r in recs:
        assert isinstance(r, VitBenchRecord) and r.name == name
        assert set(r.acc) <= set(ACC_KEYS.values())
        for v in r.acc.values():
            assert isinstance(v, float) and math.isfinite(v) and 20.0 <= v <= 100.0
        assert {"cifar100_distill", "flowers_distill", "chaoyang_distill"} <= set(r.acc)
        if name == "autoformer_2":
            assert "cifar100" not in r.acc          # null in the source
        else:
            assert {"cifar100", "flowers", "chaoyang"} <= set(r.acc)
        assert ("imagenet_supernet" in r.acc) == (r.space == "autoformer")
        if r.space == "autoformer":
            assert r.arch["hidden_dim"] in (192, 216, 240) and r.arch["depth"] in (12, 13, 14)
            assert set(r.arch["num_heads"]) <= {3, 4} and set(r.arch["mlp_ratio"]) <= {3.5, 4.0}
        else:
            assert r.arch["base_dim"] in (16, 24, 32, 40) and r.arch["mlp_ratio"] in (2, 4, 6, 8)
            assert len(r.arch["depth"]) == len(r.arch["num_heads"]) == 3


def test_data_dir_env(monkeypatch, tmp_path):
    # the default is the data shipped with the package (compressed)
    monkeypatch.delenv(ENV, raising=False)
    shipped = vitbench_dir()
    assert shipped == SHIPPED / "vit-bench-101" and (shipped / "gt_pit.json.gz").is_file()
    monkeypatch.setenv(ENV, str(shipped.parent))
    assert vitbench_dir() == shipped
    assert len(load_vitbench("pit", data_dir=shipped.parent)) == 100
    # an uncompressed copy with the same layout replaces the shipped one, by argument or environment
    (tmp_path / "vit-bench-101").mkdir()
    (tmp_path / "vit-bench-101" / "gt_pit.json").write_bytes(gzip.decompress((shipped / "gt_pit.json.gz").read_bytes()))
    assert load_vitbench("pit", data_dir=tmp_path) == load_vitbench("pit")
    monkeypatch.setenv(ENV, str(tmp_path))
    assert vitbench_dir() == tmp_path / "vit-bench-101" and len(load_vitbench("pit")) == 100
    # a file that is not there: one line naming it
    with pytest.raises(DataFileError) as e:
        load_vitbench("autoformer")
    assert str(tmp_path / "vit-bench-101" / "gt_autoformer.json") in str(e.value) and "\n" not in str(e.value)


def test_shipped_data_match_their_provenance_hashes():
    """Every shipped file decompresses to the sha256 its folder's PROVENANCE.md records, stays well
    under 5 MB, and has its LICENSE beside it (``bench/ship_data.py --check`` does the same, and
    compares with the source when there is one)."""
    assert check_shipped() == []
    for folder in ("help", "nb201-zero-cost", "vit-bench-101", "timm-results"):
        assert (SHIPPED / folder / "LICENSE").is_file() and (SHIPPED / folder / "PROVENANCE.md").is_file()
    assert all(p.stat().st_size < 5 * 1024 * 1024 for p in SHIPPED.rglob("*") if p.is_file())
    assert data_path("timm-results", "results-imagenet.csv", root=SHIPPED).name == "results-imagenet.csv.gz"


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sample_builds_and_runs(name):
    recs = load_vitbench(name)
    space = recs[0].space
    # smallest, largest (by arch size) and one from the middle of the file
    key = (lambda r: (r.arch["hidden_dim"], r.arch["depth"])) if space == "autoformer" else \
          (lambda r: (r.arch["base_dim"] * max(r.arch["num_heads"]), sum(r.arch["depth"])))
    sample = [min(recs, key=key), max(recs, key=key), recs[50]]
    x = torch.randn(2, 3, 224, 224)
    for r in sample:
        net = build_vitbench(name, r).eval()
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, 100) and torch.isfinite(y).all()
        n = count_params(net)
        lo, hi = (5.0e6, 10.0e6) if space == "autoformer" else (0.15e6, 30e6)   # measured: 5.10-9.75M, 0.157-29.5M
        assert lo < n < hi, (r.arch, n)


def test_first_pit_record_param_count():
    # base_dim 16, heads [2,4,4], depth [2,8,4], ratio 6: widths 32, 64, 64
    r = load_vitbench("pit")[0]
    assert r.arch == {"base_dim": 16, "mlp_ratio": 6.0, "depth": [2, 8, 4], "num_heads": [2, 4, 4]}
    net = build_vitbench("pit", r)
    assert net.dims == [32, 64, 64]
    assert count_params(net) == count_params(build_pit(r.arch))
