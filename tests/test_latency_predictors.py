"""Latency predictors on real host measurements (tests/data/host_measurements.csv, taken on this
project's machine with `nas farm sample`; see tests/data/README.md)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import search_space as ss
from device_farm import MeasurementStore
from predictors import estimator_from_dict
from predictors.latency import METHODS, DeviceModel, NoDataError, cross_validate, dataset, train
from predictors.latency.features import _reference_kernel_features, feature_matrix, kernel_features
from predictors.latency.training import check_data

DATA = Path(__file__).parent / "data" / "host_measurements.csv"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = MeasurementStore(tmp_path_factory.mktemp("store") / "m.sqlite")
    s.import_csv(DATA)
    return s


@pytest.fixture(scope="module")
def data(store):
    cfgs, y, _ = dataset(store, "host")
    return cfgs, y


def test_fast_kernel_features_equal_the_operator_list():
    for cfg in ss.DEFAULT_SPACE.sample_random(40, seed=4) + list(ss.PRESETS.values()):
        assert np.allclose(kernel_features(cfg), _reference_kernel_features(cfg))
        assert kernel_features(cfg)[3::4].sum() == ss.cost(cfg).params
        assert kernel_features(cfg)[0::4].sum() == ss.cost(cfg).macs


def test_the_shipped_measurements_are_real_host_rows(data):
    cfgs, y = data
    assert len(y) >= 100 and np.all(y > 1) and len({c.arch_id for c in cfgs}) == len(cfgs)


@pytest.mark.parametrize("method", list(METHODS))
def test_predictor_round_trips_through_json_with_identical_predictions(method, data, request):
    cfgs, y = data
    query = cfgs[80:]
    if getattr(METHODS[method], "needs_profiles", False):  # learns from onnxruntime's per-operator times
        cfgs, y, profiles = request.getfixturevalue("host_ops")
        est = METHODS[method](n_folds_sigma=2, n_estimators=20).fit(cfgs[:40], y[:40], profiles=profiles[:40])
        query = cfgs[40:80]
    else:
        est = METHODS[method]().fit(cfgs[:80], y[:80])
    back = estimator_from_dict(json.loads(json.dumps(est.to_dict())))
    assert np.array_equal(est.predict(query)[0], back.predict(query)[0])
    mean, std = back.predict(query)
    assert np.all(std > 0) and np.all(mean > 0)


def test_kernel_sum_has_non_negative_costs_and_the_correction_fits_what_it_misses(data):
    cfgs, y = data
    plain = METHODS["kernel"]().fit(cfgs, y)
    corrected = METHODS["kernel_corr"]().fit(cfgs, y)
    assert np.all(plain.weights_ >= 0) and plain.trees_ is None and corrected.trees_ is not None
    in_sample = [np.mean(np.abs(np.log(e.predict(cfgs)[0] / y))) for e in (plain, corrected)]
    assert in_sample[1] < in_sample[0]


def test_learned_predictor_beats_macs_alone_in_cross_validation(data):
    """The reason to ship a learned model at all (issue #4): measured, on held-out candidates."""
    cfgs, y = data
    macs, _ = cross_validate("macs", cfgs, y)
    kernel, _ = cross_validate("kernel", cfgs, y)
    assert kernel.within_10 > macs.within_10 and kernel.kendall_tau > macs.kendall_tau


def test_train_picks_the_best_method_by_cv_and_saves_json(store, tmp_path):
    p = train(store, "host")
    best = max(p.comparison.values(), key=lambda r: (r["within_10"], r["within_5"], -r["rmse"]))
    assert p.comparison[p.method] == best
    path = p.save(tmp_path / "host.json")
    q = DeviceModel.load(path)
    check_data(q, store, path)
    cfgs, _, _ = dataset(store, "host")
    assert np.array_equal(q.predict(cfgs[:5])[0], p.predict(cfgs[:5])[0])


def test_train_chooses_on_the_held_out_networks_when_the_store_has_enough(tmp_path):
    """The re-measured host data hold 42 clean held-out networks: the method is the best one on them
    (issue #13), not the cross-validation favourite, and the provenance says so."""
    from conftest import HOST_V2

    s = MeasurementStore(tmp_path / "v2.sqlite")
    s.import_csv(HOST_V2)  # without operator profiles: the whole-network methods only
    p = train(s, "host")
    held = {m: r["rescaled"] for m, r in p.held_out.items() if isinstance(r, dict) and "rescaled" in r}
    assert p.held_out["n"] >= 20 and set(held) == set(p.comparison)
    best = max(held, key=lambda m: (held[m]["within_10"], held[m]["within_5"], held[m]["kendall_tau"]))
    assert p.method == best and f"chosen by held-out ({p.held_out['n']} networks)" in p.provenance


def test_loading_against_changed_data_warns(store, tmp_path):
    p = train(store, "host", method="macs")
    path = p.save(tmp_path / "host.json")
    other = MeasurementStore(tmp_path / "other.sqlite")
    other.import_csv(DATA)
    row = other.query(device="host")[0]
    row.median_ms *= 1.5
    other.put(row)
    with pytest.warns(UserWarning, match="retrain"):
        check_data(DeviceModel.load(path), other, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_data(DeviceModel.load(path), store, path)


def test_energy_without_data_explains_what_would_provide_it(store):
    with pytest.raises(NoDataError, match="no energy measurements.*rapl.*nvml.*ina3221.*android-battery.*nas farm import"):
        train(store, "host", target="energy")


def test_ten_thousand_predictions_are_batched(data):
    cfgs, y = data
    est = METHODS["kernel"]().fit(cfgs, y)
    many = ss.DEFAULT_SPACE.sample_random(2000, seed=9)
    kf, gf = feature_matrix(many)
    assert kf.shape == (2000, len(kernel_features(many[0]))) and gf.shape[0] == 2000
    pred, _ = est.predict(many)
    assert pred.shape == (2000,) and np.all(np.isfinite(pred)) and np.all(pred > 0)
