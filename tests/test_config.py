"""Configurations: JSON round trip, canonical ids, and one-line errors for every invalid field."""
import json

import pytest

from search_space import DEFAULT_SPACE, PRESETS, ConfigError, EdgeViTConfig, load_config


def _xxs_dict():
    return json.loads(PRESETS["edgevit_xxs"].to_json())


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip_keeps_the_architecture(name):
    cfg = PRESETS[name]
    back = EdgeViTConfig.from_json(cfg.to_json())
    assert back == cfg and back.arch_id == cfg.arch_id and back.name == name


def test_id_ignores_key_order_defaults_and_irrelevant_fields():
    canonical = PRESETS["edgevit_xxs"]
    # Written by hand: depth instead of blocks, heads instead of head_dim, defaults left out,
    # keys shuffled, a kernel size on the attention-only stage (which has no LocalAgg).
    hand = {
        "stages": [
            {"sr_ratio": 4, "depth": 1, "width": 36, "heads": 1},
            {"width": 72, "heads": 2, "depth": 1, "sr_ratio": 2, "mlp_ratio": 4.0},
            {"kernel_size": 5, "width": 144, "head_dim": 36, "depth": 3, "sr_ratio": 2},
            {"width": 288, "depth": 2, "head_dim": 36, "kernel_size": 7},
        ],
        "num_classes": 1000,
    }
    cfg = EdgeViTConfig.from_dict(hand)
    assert cfg.arch_id == canonical.arch_id
    assert cfg == canonical


def test_id_changes_with_the_architecture():
    d = _xxs_dict()
    base = EdgeViTConfig.from_dict(d).arch_id
    for path, value in [(("resolution",), 256), (("num_classes",), 100), (("stages", 2, "kernel_size"), 3),
                        (("stages", 0, "blocks"), ["local"]), (("stages", 1, "mlp_ratio"), 3)]:
        e = json.loads(json.dumps(d))
        target = e
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert EdgeViTConfig.from_dict(e).arch_id != base, path


def test_local_only_stage_drops_attention_fields():
    d = _xxs_dict()
    d["stages"][0] = {"width": 36, "blocks": ["local"], "head_dim": 12, "sr_ratio": 4, "kernel_size": 3}
    cfg = EdgeViTConfig.from_dict(d)
    assert cfg.stages[0].head_dim is None and cfg.stages[0].sr_ratio is None
    assert "head_dim" not in cfg.canonical()["stages"][0]


INVALID = [
    # (mutation, field named in the error, words in the allowed part)
    (lambda d: d["stages"][1].update(width=100), "stages[1].head_dim", "must divide width 100"),
    (lambda d: d["stages"][1].update(sr_ratio=3), "stages[1].sr_ratio", "allowed: 1, 2, 4, 7, 14, 28"),
    (lambda d: d.update(resolution=200), "resolution", "multiple of 32"),
    (lambda d: d["stages"][2]["blocks"].__setitem__(1, "conv"), "stages[2].blocks[1]", "allowed: lgl, local, global"),
    (lambda d: d["stages"][0].update(kernel_size=4), "stages[0].kernel_size", "must be odd"),
    (lambda d: d["stages"][0].update(width=0), "stages[0].width", ">= 1"),
    (lambda d: d["stages"][0].update(blocks=[]), "stages[0].blocks", "at least one block"),
    (lambda d: d["stages"][0].update(mlp_ratio=-1), "stages[0].mlp_ratio", "> 0"),
    (lambda d: d["stages"][0].update(heads=5), "stages[0].heads", "must divide width 36"),
    (lambda d: d["stages"][0].update(depth=3), "stages[0].depth", "disagrees"),
    (lambda d: d["stages"][0].update(colour="red"), "stages[0].colour", "unknown key"),
    (lambda d: d.update(stages=d["stages"][:3]), "stages", "exactly 4 stages"),
    (lambda d: d.update(num_classes=-1), "num_classes", ">= 0"),
    (lambda d: d.update(extra=1), "extra", "unknown key"),
    (lambda d: d["stages"][3].update(width=True), "stages[3].width", "integer"),
]


@pytest.mark.parametrize("mutate,field,words", INVALID, ids=[f for _, f, _ in INVALID])
def test_invalid_field_is_rejected_with_a_one_line_message(mutate, field, words):
    d = _xxs_dict()
    mutate(d)
    with pytest.raises(ConfigError) as exc:
        EdgeViTConfig.from_dict(d)
    msg = str(exc.value)
    assert "\n" not in msg
    assert exc.value.field == field and msg.startswith(field + "=")
    assert words in msg


def test_outside_the_search_space_names_field_and_allowed_values():
    d = _xxs_dict()
    d["stages"][0]["mlp_ratio"] = 6
    cfg = EdgeViTConfig.from_dict(d)  # valid as a network
    with pytest.raises(ConfigError, match=r"stages\[0\]\.mlp_ratio=6: outside the search space; allowed: 2, 3, 4"):
        DEFAULT_SPACE.check(cfg)


def test_load_config_accepts_presets_files_and_wrapped_records(tmp_path):
    assert load_config("edgevit_xs") is PRESETS["edgevit_xs"]
    f = tmp_path / "c.json"
    f.write_text(PRESETS["edgevit_s"].to_json())
    assert load_config(f) == PRESETS["edgevit_s"]
    w = tmp_path / "best.json"
    w.write_text(json.dumps({"id": "x", "config": PRESETS["edgevit_s"].to_dict()}))
    assert load_config(w) == PRESETS["edgevit_s"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("edgevit_huge")


def test_side_step_and_nearest_side_follow_the_sampling_ratios():
    import torch

    from search_space import build_model

    xxs = PRESETS["edgevit_xxs"]
    assert xxs.side_step % 32 == 0 and xxs.nearest_side(10_000) == xxs.resolution
    for cfg in DEFAULT_SPACE.sample_random(100, seed=7):
        side = cfg.nearest_side(120)
        assert side % cfg.side_step == 0 and side <= cfg.resolution
    cfg = DEFAULT_SPACE.sample_random(1, seed=8)[0]
    side = cfg.nearest_side(100)
    with torch.no_grad():
        assert build_model(cfg).eval()(torch.randn(1, 3, side, side)).shape == (1, cfg.num_classes)


HOSTILE = [
    # (mutation, field named in the error, words in the message); each must be refused in O(1)
    (lambda d: d["stages"][0].pop("blocks") and d["stages"][0].update(depth=10_000_000), "stages[0].depth", "<= 64"),
    (lambda d: d["stages"][0].update(blocks=["lgl"] * 100_000), "stages[0].blocks", "at most 64 blocks"),
    (lambda d: d["stages"][0].update(width=10**12), "stages[0].width", "<= 8192"),
    (lambda d: d["stages"][0].update(width=10**12, heads=7), "stages[0].width", "<= 8192"),
    (lambda d: d.update(resolution=30_000_000_000 // 32 * 32), "resolution", "up to 4096"),
    (lambda d: d["stages"][1].update(mlp_ratio=float("nan")), "stages[1].mlp_ratio", "finite number"),
    (lambda d: d["stages"][1].update(mlp_ratio=float("inf")), "stages[1].mlp_ratio", "finite number"),
    (lambda d: d["stages"][1].update(mlp_ratio=1e308), "stages[1].mlp_ratio", "<= 32"),
    (lambda d: d.update(num_classes=10**5000), "num_classes", "<= 1000000"),
    (lambda d: d["stages"][2].update(sr_ratio=10**40), "stages[2].sr_ratio", "<= 1024"),
    (lambda d: d["stages"][2].update(head_dim=10**9), "stages[2].head_dim", "<= 144"),
    (lambda d: d["stages"][2].update(kernel_size=10**9 + 1), "stages[2].kernel_size", "<= 63"),
    (lambda d: d.update(name="x" * 200_000), "name", "at most 200 characters"),
    (lambda d: d["stages"][0].update(blocks=[["lgl"]]), "stages[0].blocks[0]", "unknown block kind"),
    (lambda d: d["stages"][0].update(heads=2, head_dim="x"), "stages[0].head_dim", "integer"),
]


@pytest.mark.parametrize("mutate,field,words", HOSTILE, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(HOSTILE)])
def test_hostile_values_are_refused_at_once_in_one_short_line(mutate, field, words):
    import time

    d = _xxs_dict()
    mutate(d)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        EdgeViTConfig.from_dict(d)
    assert time.perf_counter() - t0 < 0.5  # O(1): no loop or allocation proportional to the value
    msg = str(exc.value)
    assert exc.value.field == field and words in msg, msg
    assert "\n" not in msg and len(msg) < 300, msg


def test_divisor_lists_in_messages_are_short_and_fast():
    d = _xxs_dict()
    d["stages"][3].update(width=8190, head_dim=4096)  # 8190 = 2 * 3^2 * 5 * 7 * 13 has 48 divisors
    with pytest.raises(ConfigError, match=r"allowed: 1, 2, 3, 5, 6, 7, 9, .*, 35, \.\.\. \(48 in all\)$"):
        EdgeViTConfig.from_dict(d)


@pytest.mark.parametrize("text,words", [
    ('{"resolution": NaN}', "NaN is not a finite number"),
    ('{"resolution": 1e999}', "not a finite number"),
    ('{"resolution": ' + "7" * 5000 + "}", "an integer of 5000 digits"),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
])
def test_json_text_is_read_with_the_file_limits(text, words):
    with pytest.raises(ConfigError, match=words) as exc:
        EdgeViTConfig.from_json(text)
    assert len(str(exc.value)) < 300


@pytest.mark.parametrize("content,words", [
    (lambda: json.dumps(_xxs_dict()).encode("utf-16"), "not UTF-8"),
    (lambda: bytes(range(256)), "not UTF-8"),
    (lambda: b'{"stages": [], "x": "' + b"a" * 2_000_000 + b'"}', "more than the 1,048,576 allowed"),
    (lambda: json.dumps(_xxs_dict()).replace('"mlp_ratio": 4', '"mlp_ratio": Infinity', 1).encode(), "Infinity"),
])
def test_load_config_refuses_unreadable_files_in_one_line(tmp_path, content, words):
    f = tmp_path / "c.json"
    f.write_bytes(content())
    with pytest.raises(ConfigError, match=words) as exc:
        load_config(f)
    assert exc.value.field == "config" and "\n" not in str(exc.value)


def test_default_space_lies_within_the_configuration_limits():
    from search_space import SearchSpace
    from search_space.config import LIMITS

    assert max(DEFAULT_SPACE.resolutions) * 8 <= LIMITS["resolution"]
    for cfg in [*PRESETS.values(), *DEFAULT_SPACE.sample_random(50, seed=3)]:
        assert EdgeViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="beyond the configuration limit"):
        SearchSpace(resolutions=(8192,))
