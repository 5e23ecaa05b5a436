"""One shape for every predictor (issue #12): fit -> self, predict -> (mean, std), describe, JSON through
the registry, validated on load. Each estimator is fitted on real data: the shipped host measurements
for the whole-network and few-shot models, a phone's real block table for the phone model."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import search_space as ss
from device_farm import MeasurementStore
from predictors import ModelFileError, estimator_from_dict, registered_kinds
from predictors.accuracy import AccuracyPredictor, ProxyAccuracy, load_prior, reference_configs
from predictors.latency import METHODS, DeviceModel, FewShotAdapter, dataset
from predictors.latency.phone import PhoneLatencyPredictor, table_blocks
from predictors.latency.trees import TreeEnsemble
from test_latency_predictors import DATA


@pytest.fixture(scope="module")
def host():
    store = MeasurementStore(Path(tempfile.mkdtemp()) / "m.sqlite")
    store.import_csv(DATA)
    cfgs, y, _ = dataset(store, "host")
    return cfgs, y


@pytest.fixture(scope="module")
def fitted(host, host_ops):
    """One fitted estimator of every registered kind."""
    cfgs, y = host
    out = {k: cls(n_folds_sigma=3).fit(cfgs[:60], y[:60]) for k, cls in METHODS.items()
           if not getattr(cls, "needs_profiles", False)}
    op_cfgs, op_y, profiles = host_ops  # the operator model learns from onnxruntime's per-operator times
    out.update({k: cls(n_folds_sigma=2, n_estimators=30).fit(op_cfgs[:60], op_y[:60], profiles=profiles[:60])
                for k, cls in METHODS.items() if getattr(cls, "needs_profiles", False)})
    keys, ms = table_blocks("s21")
    types = ("firstconv", "conv", "transattn", "transffn")  # what the EdgeViT mapping queries
    rows = [i for t in types for i in [j for j, k in enumerate(keys) if k.startswith(t + "_")][:120]]
    out["phone-blocks"] = PhoneLatencyPredictor("s21", block_types=types, extrapolation=False, n_estimators=20).fit(
        [keys[i] for i in rows], [ms[i] for i in rows])
    out["fewshot"] = FewShotAdapter(bases={"macs": out["macs"], "phone": out["phone-blocks"]}).fit(cfgs[60:80], y[60:80])
    proxy = ProxyAccuracy(("params", "macs")).fit(reference_configs())
    out["proxy"] = proxy
    acc = 60 + 3 * np.log([ss.cost(c).params for c in cfgs[:12]])
    out["gp"] = AccuracyPredictor(proxy, dataset="toy").fit(cfgs[:12], acc)
    out["prior"] = load_prior()
    return out


def test_gp_with_the_prior_as_mean_round_trips(host):
    cfgs, _ = host
    est = AccuracyPredictor(dataset="imagenet-1k", prior=load_prior()).fit(cfgs[:8], np.linspace(60, 75, 8))
    back = estimator_from_dict(json.loads(json.dumps(est.to_dict())))
    np.testing.assert_allclose(back.predict(cfgs[20:25])[0], est.predict(cfgs[20:25])[0], rtol=1e-12)
    np.testing.assert_allclose(back.predict(cfgs[20:25])[1], est.predict(cfgs[20:25])[1], rtol=1e-12)


def test_every_registered_kind_is_covered(fitted):
    assert set(fitted) == set(registered_kinds())


def test_every_kind_round_trips_through_json_with_identical_predictions(fitted, host):
    cfgs, _ = host
    query = cfgs[100:106] + list(ss.PRESETS.values())
    for kind, est in fitted.items():
        d = json.loads(json.dumps(est.to_dict()))
        assert d["kind"] == kind and isinstance(d["params"], dict) and isinstance(d["state"], dict)
        back = estimator_from_dict(d)
        m1, s1 = est.predict(query)
        m2, s2 = back.predict(query)
        assert m1.shape == s1.shape == (len(query),), kind
        np.testing.assert_allclose(m2, m1, rtol=1e-12, err_msg=kind)
        np.testing.assert_allclose(s2, s1, rtol=1e-12, err_msg=kind)
        assert isinstance(back.describe(), str) and "\n" not in back.describe()


def test_fit_returns_self_and_clone_keeps_parameters_only(fitted, host, host_ops):
    cfgs, y = host
    op_cfgs, op_y, profiles = host_ops
    for kind, cls in METHODS.items():
        est = cls(n_folds_sigma=0)
        if getattr(cls, "needs_profiles", False):
            est.set_params(n_estimators=10)
            assert est.fit(op_cfgs[:30], op_y[:30], profiles=profiles[:30]) is est
        else:
            assert est.fit(cfgs[:30], y[:30]) is est
        fresh = clone(est)
        assert fresh.get_params() == est.get_params()
        with pytest.raises(NotFittedError):
            fresh.predict(cfgs[:2])


@pytest.mark.parametrize("bad,msg", [
    ({"kind": "nope", "format_version": 2, "params": {}, "state": {}}, "kind='nope': not a model kind"),
    ({"kind": "macs", "format_version": 1, "params": {}, "state": {}}, "format_version=1"),
    ({"kind": "macs", "format_version": 2, "params": {"evil": 1}, "state": {}}, "unknown parameter 'evil'"),
    ({"kind": "macs", "format_version": 2, "params": {}, "state": {"coef": [1, 2, 3], "rel_sigma": 0.1, "n_train": 3}},
     "state.coef"),
    ({"kind": "macs", "format_version": 2, "params": {}, "state": {"coef": ["a", 2], "rel_sigma": 0.1, "n_train": 3}},
     "invalid saved state"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_model_dicts_are_one_line_errors(bad, msg):
    with pytest.raises(ModelFileError, match=msg) as e:
        estimator_from_dict(bad)
    assert "\n" not in str(e.value)


def _tree_dict(fitted):
    return fitted["kernel_corr"].to_dict()


def test_a_tree_with_a_cycle_is_refused_fast(fitted):
    d = _tree_dict(fitted)
    tree = d["state"]["trees"]["trees"][0]
    tree["left"][1] = 0  # node 1's child is the root: a cycle
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="cycle"):
        estimator_from_dict(d)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("edit,msg", [
    (lambda t: t["feature"].__setitem__(0, 10_000), "split feature"),
    (lambda t: t["threshold"].__setitem__(0, float("nan")), "finite"),
    (lambda t: t["left"].pop(), "one length"),
    (lambda t: t["right"].__setitem__(0, -1), "one child"),
])
def test_tampered_trees_are_refused(fitted, edit, msg):
    d = _tree_dict(fitted)
    edit(d["state"]["trees"]["trees"][0])
    with pytest.raises(ModelFileError, match=msg):
        estimator_from_dict(d)


def test_a_file_declaring_millions_of_trees_is_refused_before_allocating():
    d = {"offset": 0.0, "scale": 1.0, "n_features": 3, "trees": [{}] * 2_000_000}
    with pytest.raises(ModelFileError, match="at most"):
        TreeEnsemble.from_dict(d)


def test_device_model_file_round_trips_and_refuses_garbage(fitted, tmp_path):
    model = DeviceModel(device="host", target="latency", estimator=fitted["kernel"], source="measured",
                        provenance="test", n_measurements=60)
    path = model.save(tmp_path / "host-latency.json")
    back = DeviceModel.load(path)
    cfg = [ss.PRESETS["edgevit_xs"]]
    assert back.predict(cfg)[0][0] == model.predict(cfg)[0][0] and back.calibration == model.calibration
    path.write_bytes(b"\x00\x01binary")
    with pytest.raises(ModelFileError, match="not UTF-8|not valid JSON"):
        DeviceModel.load(path)
    path.write_text('{"format_version": 2, "device": "host", "target": "latency", "source": "measured", '
                    '"provenance": "", "estimator": {"kind": "macs"}}')
    with pytest.raises(ModelFileError, match="format_version"):
        DeviceModel.load(path)
