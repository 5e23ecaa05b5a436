"""The accuracy side: result records, the proxy percentile, the predictor and the switch between them."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from predictors import accuracy as A
from predictors.accuracy import ANCHORS, ResultRecord, append_result, read_results
from search_space import DEFAULT_SPACE, PRESETS, build_model, cost

ANALYTIC = ("params", "macs")


def test_anchors_carry_the_paper_numbers_and_their_source():
    by = {r.arch_id: r for r in ANCHORS}
    assert by[PRESETS["edgevit_xxs"].arch_id].top1 == 74.4
    assert by[PRESETS["edgevit_s"].arch_id].top1 == 81.0
    assert all("EdgeViTs" in r.source and r.dataset == "imagenet-1k" for r in ANCHORS)


@pytest.mark.parametrize("field,value,msg", [("fidelity", "medium", "fidelity='medium'"), ("top1", 140.0, "top1=140.0"),
                                             ("arch_id", "000000000000", "does not match")])
def test_bad_records_are_refused_with_the_field_named(field, value, msg):
    kw = dict(dataset="d", epochs=1, resolution=224, top1=50.0)
    if field == "arch_id":
        with pytest.raises(ValueError, match=msg):
            ResultRecord(arch_id=value, config=PRESETS["edgevit_xxs"].to_dict(), **kw)
        return
    kw[field] = value
    with pytest.raises(ValueError, match=msg):
        ResultRecord.of(PRESETS["edgevit_xxs"], **kw)


def test_results_round_trip_skip_bad_lines_and_latest_wins(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    cfg = PRESETS["edgevit_xs"].replace(num_classes=3)
    append_result(ResultRecord.of(cfg, dataset="shapes", epochs=2, resolution=224, top1=40.0), path)
    with open(path, "a") as f:
        f.write("{not json\n")
    append_result(ResultRecord.of(cfg, dataset="shapes", epochs=2, resolution=224, top1=55.0, top1_ema=60.0), path)
    append_result(ResultRecord.of(cfg, dataset="other", epochs=2, resolution=224, top1=10.0), path)
    with caplog.at_level(logging.WARNING):
        recs = read_results(path, dataset="shapes", anchors=False)
    assert "malformed" in caplog.text
    assert len(recs) == 1 and recs[0].top1 == 55.0 and recs[0].best_top1 == 60.0
    assert len(read_results(path)) == 3 + 2  # anchors + the two data sets
    assert len(read_results(tmp_path / "missing.jsonl")) == 3


def test_proxy_input_side_respects_strides_and_sampling_ratios():
    for cfg in DEFAULT_SPACE.sample_random(200, seed=3) + list(PRESETS.values()):
        side = A.proxy_input_side(cfg)
        assert 32 <= side <= cfg.resolution and side % 32 == 0
        for i, st in enumerate(cfg.stages):
            if st.has_attention:
                assert (side // (4 * 2 ** i)) % st.sr_ratio == 0, (cfg.arch_id, i)
    assert A.proxy_input_side(PRESETS["edgevit_xxs"]) == 128


def test_models_run_at_the_proxy_side():
    torch.manual_seed(0)
    for cfg in DEFAULT_SPACE.sample_random(6, seed=11):
        side = A.proxy_input_side(cfg)
        with torch.no_grad():
            out = build_model(cfg).eval()(torch.randn(1, 3, side, side))
        assert out.shape == (1, cfg.num_classes)


def test_shipped_reference_matches_the_default_settings(tmp_path):
    ref = A.load_reference(A.ProxySettings(), root=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing rebuilt
    assert len(ref.reference_) == A.REFERENCE_SIZE + 3
    ids = {c.arch_id for c in A.reference_configs()}
    assert set(ref.reference_) == ids
    assert all(np.isfinite(v) for s in ref.reference_.values() for v in s.values())


def test_proxy_percentile_is_deterministic_and_computed_for_new_candidates():
    acc = A.load_accuracy_model(results=[], proxies=("default",))
    assert acc.kind == "proxy" and "+".join(A.DEFAULT_PROXIES) in acc.describe()
    presets, _ = acc.predict([PRESETS["edgevit_xxs"], PRESETS["edgevit_xs"], PRESETS["edgevit_s"]])
    assert 0 < presets[0] < presets[1] < presets[2] < 1  # the paper's order (74.4 < 77.5 < 81.0)
    new = DEFAULT_SPACE.sample_random(1, seed=99)[0]
    a, std = acc.predict([new])
    b, _ = acc.predict([new])
    assert a[0] == b[0] and np.isnan(std[0]) and 0 < a[0] < 1
    raw = A.raw_scores(new)
    assert set(raw) == set(A.DEFAULT_PROXIES)
    assert acc.score_raw(raw) == a[0]


def test_analytic_params_equals_the_model():
    cfg = DEFAULT_SPACE.sample_random(1, seed=5)[0]
    raw = A.raw_scores(cfg, A.ProxySettings(ANALYTIC))
    assert raw["params"] == sum(p.numel() for p in build_model(cfg).parameters())
    assert raw["macs"] == cost(cfg).macs


def test_percentile_orders_like_the_raw_score():
    ref = A.ProxyAccuracy(("params",)).fit(A.reference_configs())
    vals = sorted(s["params"] for s in ref.reference_.values())
    lo, mid, hi = ref.score_raw({"params": vals[0] - 1}), ref.score_raw({"params": vals[33]}), ref.score_raw({"params": vals[-1] + 1})
    assert 0 < lo < mid < hi < 1
    assert ref.score_raw({"params": float("nan")}) < lo
    # beyond the population's largest network the score still grows (no tie at the top rank)
    assert ref.score_raw({"params": 2 * vals[-1]}) > hi


def _records(cfgs, acc):
    return [ResultRecord.of(c, dataset="toy", epochs=1, resolution=c.resolution, top1=float(a)) for c, a in zip(cfgs, acc)]


def test_anchors_alone_keep_the_proxy_and_say_why(tmp_path):
    acc = A.load_accuracy_model(results=tmp_path / "none.jsonl", proxies=ANALYTIC)
    assert acc.kind == "proxy" and "3 training results" in acc.describe() and "needs >= 5" in acc.describe()


def test_switch_to_the_predictor_only_when_it_beats_the_proxy():
    cfgs = DEFAULT_SPACE.sample_random(14, seed=21)
    logp = np.log([cost(c).params for c in cfgs])
    # accuracy rising with size: the params percentile is already perfect, the predictor cannot beat it
    rising = _records(cfgs, 50 + 5 * (logp - logp.min()))
    acc = A.load_accuracy_model("toy", proxies=ANALYTIC, results=rising)
    assert acc.kind == "proxy" and "does not beat the proxy" in acc.describe()
    # accuracy falling with size (over-fitting, as AutoFormer without distillation on CIFAR-100 shows):
    # the params+macs percentile is anti-correlated, the predictor learns the sign
    falling = _records(cfgs, 80 - 5 * (logp - logp.min()))
    acc = A.load_accuracy_model("toy", proxies=ANALYTIC, results=falling)
    assert acc.kind == "gp" and acc.loo_tau_ > 0.5 and acc.proxy_tau_ < -0.5
    assert "predicted top-1" in acc.describe()
    mean, std = acc.predict(cfgs[:3])
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    assert np.corrcoef(mean, [r.top1 for r in falling[:3]])[0, 1] > 0.9
    far = PRESETS["edgevit_s"].replace(resolution=256)
    _, far_std = acc.predict([far])
    assert far_std[0] > np.median(std)  # uncertainty grows away from the training results


def test_unknown_proxy_name_is_one_line():
    from search_space.config import ConfigError

    with pytest.raises(ConfigError, match="proxies=.*allowed: .*synflow"):
        A.load_accuracy_model(proxies=("synflow", "nope"))


def test_predictor_is_picklable_for_ray(tmp_path):
    import pickle  # our own object, round-tripped in memory (what Ray does to ship it to a worker)

    acc = A.load_accuracy_model(results=[], proxies=ANALYTIC)
    again = pickle.loads(pickle.dumps(acc))
    cfg = PRESETS["edgevit_xs"]
    assert again.predict([cfg])[0][0] == acc.predict([cfg])[0][0]
    json.dumps(acc.to_dict())


# ------------------------------------------------------------------------------------ the prior (issue #15)
PRESET_LIST = [PRESETS["edgevit_xxs"], PRESETS["edgevit_xs"], PRESETS["edgevit_s"]]


def test_shipped_prior_is_what_the_protocol_chooses_on_the_shipped_table():
    from predictors.accuracy.prior import FORMS, AccuracyPrior, choose_form, table_rows

    shipped = A.load_prior()
    again = AccuracyPrior(source=shipped.source).fit(*table_rows())
    assert again.form_ == shipped.form_ == choose_form(again.lofo_) and set(again.lofo_) == set(FORMS)
    np.testing.assert_allclose(again.predict(PRESET_LIST)[0], shipped.predict(PRESET_LIST)[0], rtol=1e-9)
    # the chosen form is never worse held out than the trivial fits it is reported beside
    assert shipped.lofo_mae() <= min(shipped.lofo_mae("params"), shipped.lofo_mae("macs"))


def test_prior_estimates_top1_with_an_interval_and_says_what_it_rests_on():
    prior = A.load_prior()
    mean, std = prior.predict(PRESET_LIST)
    assert 60 < mean[0] < mean[1] < mean[2] < 90 and np.all(std > 0)
    d = prior.describe()
    assert "top-1" in d and "leave-one-family-out" in d and "#params alone" in d and "validated on" in d
    assert all(not prior.domain().outside_cfg(c) for c in PRESET_LIST)
    huge = PRESETS["edgevit_s"].replace(resolution=256)
    import dataclasses

    _, far = prior.predict([huge.replace(stages=tuple(dataclasses.replace(s, width=s.width * 2) for s in huge.stages))])
    assert far[0] > std[2]  # the interval widens away from the evidence


def test_prior_round_trips_and_refuses_a_tampered_file():
    from predictors import ModelFileError, estimator_from_dict

    prior = A.load_prior()
    d = json.loads(json.dumps(prior.to_dict()))
    np.testing.assert_allclose(estimator_from_dict(d).predict(PRESET_LIST)[0], prior.predict(PRESET_LIST)[0], rtol=1e-12)
    d["state"]["form"] = "magic"
    with pytest.raises(ModelFileError, match="state.form='magic'"):
        estimator_from_dict(d)


def test_default_score_is_the_prior_corrected_by_training_results(tmp_path):
    assert A.DEFAULT_SOURCE == "prior"
    acc = A.load_accuracy_model(results=tmp_path / "none.jsonl")  # the paper's three anchors only
    assert acc.kind == "gp" and acc.unit == "top-1 %" and acc.prior is not None
    mean, std = acc.predict(PRESET_LIST)
    np.testing.assert_allclose(mean, [74.4, 77.5, 81.0], atol=1.0)
    assert "estimated top-1" in acc.describe() and "3 training results" in acc.describe()
    # five of the user's own trainings, all 3 points above the prior: predictions near them follow
    cfgs = DEFAULT_SPACE.sample_random(40, seed=4)
    near, far = cfgs[:5], cfgs[5:]
    prior = A.load_prior()
    recs = [ResultRecord.of(c, dataset="imagenet-1k", epochs=300, resolution=c.resolution, top1=float(m + 3))
            for c, m in zip(near, prior.predict(near)[0])]
    for r in recs:
        append_result(r, tmp_path / "r.jsonl")
    acc = A.load_accuracy_model(results=tmp_path / "r.jsonl")
    shift = acc.predict(near)[0] - prior.predict(near)[0]
    assert np.all(shift > 1.5) and "8 training results" in acc.describe()
    assert np.median(np.abs(acc.predict(far)[0] - prior.predict(far)[0])) < np.median(shift)


def test_on_another_dataset_the_prior_only_ranks_and_says_so():
    acc = A.load_accuracy_model("shapes", results=[])
    assert acc.kind == "prior" and "no training results on shapes" in acc.describe()


def test_domain_flags_what_lies_outside():
    dom = A.Domain.of([1e6, 10e6], [1e8, 2e9], [160, 256], "test")
    assert dom.outside(5e6, 5e8, 224) == []
    assert dom.outside(21.1e6, 5e8, 320) == ["params 21.1 M > 10.0 M", "resolution 320 > 256"]
    assert A.Domain.from_dict(dom.to_dict()) == dom


def test_default_model_is_picklable_for_ray(tmp_path):
    import pickle  # our own object, round-tripped in memory (what Ray does to ship it to a worker)

    acc = A.load_accuracy_model(results=tmp_path / "none.jsonl")
    again = pickle.loads(pickle.dumps(acc))
    assert again.predict(PRESET_LIST)[0][0] == acc.predict(PRESET_LIST)[0][0]
