"""EdgeViT against timm's light networks: published accuracy, the front, the verdict (issue #14)."""
import numpy as np
import pytest

from nas.compare import ZOO, Entry, _score_to_top1, _verdict, edgevit_entries, front, zoo_entries
from search_space import PRESETS
from search_space.networks import TimmNetwork


def test_every_zoo_model_has_a_published_imagenet_top1():
    entries = zoo_entries()
    assert len(entries) == len(ZOO) >= 15
    by = {e.network.spec: e for e in entries}
    mnv2 = by["timm:mobilenetv2_100@224"]
    assert mnv2.top1 == pytest.approx(72.910) and "results-imagenet.csv" in mnv2.top1_source  # timm's table, ra_in1k tag
    assert by["timm:mobilevit_s@256"].top1 == pytest.approx(78.298)
    assert all(e.label.endswith("*") == ("dist" in e.top1_source) for e in entries)  # distilled tags are marked
    families = {z.arch.split("_")[0] for z in ZOO}
    assert {"mobilenetv2", "mobilenetv3", "mobilenetv4", "mobilevit", "mobilevitv2", "efficientvit", "fastvit",
            "edgenext", "repvit", "efficientformer", "efficientformerv2"} <= families


def test_edgevit_accuracy_is_the_papers():
    e = {x.label: x.top1 for x in edgevit_entries()}
    assert e == {"edgevit_xxs": 74.4, "edgevit_xs": 77.5, "edgevit_s": 81.0}


def _entry(label, group, ms, top1):
    return Entry(label, group, TimmNetwork("mobilenetv2_100", 224), top1, "test", latency_ms=ms)


def test_front_and_verdict():
    es = [_entry("a", "cnn", 10, 70), _entry("b", "cnn", 20, 75), Entry("edgevit_xxs", "edgevit", PRESETS["edgevit_xxs"], 74.4, "paper", latency_ms=15),
          _entry("c", "hybrid", 12, 76), _entry("slow", "cnn", 30, 74)]
    mask = front(es)
    assert mask.tolist() == [True, False, False, True, False]  # b is beaten by c (faster, more accurate)
    for e, f in zip(es, mask):
        e.on_front = bool(f)
    v = _verdict(es)["edgevit_xxs"]
    assert v == {"on_front_all": False, "on_front_vs_cnns": True, "dominated_by": ["c"]}
    es.append(_entry("unmeasured", "cnn", None, 99))
    assert not front(es)[-1]


def test_estimated_top1_passes_through_the_presets_and_extends_linearly():
    anchors = [(0.2, 74.4), (0.5, 77.5), (0.8, 81.0)]
    out = _score_to_top1(np.array([0.2, 0.35, 0.8, 0.9, 0.1]), anchors)
    assert out[:3] == pytest.approx([74.4, 75.95, 81.0])
    assert out[3] == pytest.approx(81.0 + 0.1 * 3.5 / 0.3) and out[4] == pytest.approx(74.4 - 0.1 * 3.1 / 0.3)


class _NoMeasure:
    """A farm over a real store that must not measure: the stored rows answer."""

    def __init__(self, store):
        self.store = store

    def measure(self, *a, **k):
        raise AssertionError("measured although the store answers")


def test_latency_reads_the_store_and_uses_a_twice_disturbed_row_candle_normalised(tmp_path):
    from device_farm import MeasurementStore, get_profile
    from device_farm.measurement import Measurement
    from nas.compare import _latency

    store = MeasurementStore(tmp_path / "m.sqlite")
    profile = get_profile("host")
    net = TimmNetwork("mobilenetv2_100", 224)

    def row(arch_id, status, **kw):
        return Measurement(arch_id, "host", "onnxruntime", "1.0", "1x3x224x224", profile.threads, "fp32", status, **kw)

    store.candle_references("host", "1.0", profile.threads, propose={"candle": 4.0})
    store.put(row(net.arch_id, "ok", median_ms=7.0, norm_ms=6.5))
    assert _latency(_NoMeasure(store), profile, net, "1.0") == (6.5, "ok")
    # a stored disturbed row was the second try already: its candle ratio x the reference candle is
    # what the plot shows, and nothing is measured
    other = PRESETS["edgevit_xxs"]
    store.put(row(other.arch_id, "disturbed", median_ms=30.0, candle_ratio=6.0, env={"candle": "candle"}))
    ms, status = _latency(_NoMeasure(store), profile, other, "1.0")
    assert ms == pytest.approx(6.0 * 4.0) and "disturbed twice" in status
    # nothing stored: a disturbed run is measured once more before its normalised value is used
    third = PRESETS["edgevit_xs"]
    calls = []

    class _Disturbed(_NoMeasure):
        def measure(self, *a, **k):
            calls.append(1)
            return row(third.arch_id, "disturbed", median_ms=31.0, candle_ratio=6.1, env={"candle": "candle"})

    ms, status = _latency(_Disturbed(store), profile, third, "1.0")
    assert len(calls) == 2 and ms == pytest.approx(6.1 * 4.0) and "disturbed twice" in status


def test_an_estimated_top1_never_moves_the_front_or_the_verdict():
    es = [Entry("edgevit_xxs", "edgevit", PRESETS["edgevit_xxs"], 74.4, "paper", latency_ms=15),
          Entry("fam", "family", PRESETS["edgevit_xs"], 90.0, "estimated", estimated=True, latency_ms=5),
          _entry("a", "cnn", 20, 70)]
    mask = front(es)
    assert mask.tolist() == [True, False, False]
    for e, f in zip(es, mask):
        e.on_front = bool(f)
    assert _verdict(es)["edgevit_xxs"] == {"on_front_all": True, "on_front_vs_cnns": True, "dominated_by": []}
