"""Networks other than EdgeViT configurations (timm models by name), measured by the same farm protocol."""
import pytest

from device_farm import MeasurementStore, get_profile
from device_farm.measure import Farm, onnx_path_for
from search_space import PRESETS, ConfigError
from search_space.networks import EdgeViTNetwork, TimmNetwork, as_network, load_network, spec_id

from test_measure import QUICK


def test_timm_spec_defaults_to_the_pretrained_side_and_has_a_stable_id():
    net = load_network("timm:mobilevit_xxs")
    assert isinstance(net, TimmNetwork) and net.resolution == 256  # timm's pretrained input size for MobileViT
    assert net.spec == "timm:mobilevit_xxs@256" and net.arch_id == spec_id("timm:mobilevit_xxs@256")
    assert load_network("timm:mobilevit_xxs.cvnets_in1k@256").arch_id == net.arch_id  # a tag names the architecture
    assert load_network("timm:mobilenetv2_100@160").input_shape == (1, 3, 160, 160)
    assert net.config_dict() is None


@pytest.mark.parametrize("spec,words", [("timm:mobilenetv2_1000", "did you mean mobilenetv2_100"),
                                        ("timm:mobilenetv2_100@abc", "integer from 32 to 4096")])
def test_bad_timm_spec_is_a_one_line_error(spec, words):
    with pytest.raises(ConfigError) as e:
        load_network(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_configuration_is_a_network_with_its_own_id():
    net = as_network(PRESETS["edgevit_xxs"])
    assert isinstance(net, EdgeViTNetwork) and net.arch_id == PRESETS["edgevit_xxs"].arch_id
    assert net.input_shape == (1, 3, 224, 224) and net.config_dict() == PRESETS["edgevit_xxs"].to_dict()
    with pytest.raises(TypeError, match="EdgeViTConfig or a Network"):
        as_network("edgevit_xxs")


def test_farm_measures_a_timm_model_like_a_candidate(tmp_path, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=QUICK)
    net = load_network("timm:mobilenetv3_small_050@128")
    m = farm.measure(net, get_profile("host"))
    assert m.status in ("ok", "disturbed"), m.error  # a loaded machine may disturb it: what the protocol detects
    assert m.arch_id == net.arch_id and m.input_shape == "1x3x128x128" and m.config is None
    assert m.env["model"] == "timm:mobilenetv3_small_050@128" and m.median_ms > 0
    assert onnx_path_for(net, farm.cache_dir).name == f"{net.arch_id}.onnx"
    (row,) = farm.store.query(arch_id=net.arch_id)
    assert row.env["model"] == net.spec and row.status == m.status


def test_half_blocks_chain_into_the_whole_network():
    """Each half-block, built on its own at the input it gets inside the candidate, feeds the next one, and
    together they compute what the whole EdgeViT computes (the phone model's mapping prices them one by one)."""
    import torch

    from search_space import operators
    from search_space.networks import HalfBlockNetwork, half_blocks

    cfg = PRESETS["edgevit_xxs"].replace(resolution=128)
    names = half_blocks(cfg)
    assert set(names) == {op.block for op in operators(cfg)}
    x = torch.randn(1, 3, 128, 128)
    whole = as_network(cfg).build(seed=3)
    with torch.no_grad():
        y = x
        for hb in names:
            part = HalfBlockNetwork(cfg, hb)
            assert tuple(y.shape) == part.input_shape, hb
            y = part.build(seed=3)(y)
        assert torch.allclose(y, whole(x), atol=1e-5)
    with pytest.raises(ConfigError, match="half_block"):
        HalfBlockNetwork(cfg, "stages.9.downsample")
