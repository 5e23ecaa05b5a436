"""The operator-level latency model (issue #13) on real onnxruntime profiles of this CPU: the profile's
time is attributed to the candidate's operators without loss, the composed model beats MACs on
networks it never saw, and it refuses to fit without profiles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from predictors.latency import METHODS
from predictors.latency.operators import (NO_WORK_OPS, OperatorLatencyModel, attribute, module_path,
                                          profiling_overhead_us)
from predictors.metrics import regression_metrics
from search_space import operators


def test_module_path_reads_the_exporters_node_names():
    assert module_path("/stages/stages.0/blocks/blocks.1/local_agg/conv1/Conv") == "stages.0.blocks.1.local_agg.conv1"
    assert module_path("/head/Gemm") == "head"
    assert module_path("/ReduceMean") == ""
    assert module_path("Conv_123_nchwc") == ""  # made by the graph optimiser: no module path


def test_attribution_keeps_every_microsecond_and_names_most_of_them(host_ops):
    cfgs, _, profiles = host_ops
    for cfg, prof in list(zip(cfgs, profiles))[:12]:
        per, glue = attribute(cfg, prof)
        total = sum(float(n["median_us"]) for n in prof)
        assert sum(per.values()) + glue == pytest.approx(total, rel=1e-9)
        assert set(per) == {op.name for op in operators(cfg)} and min(per.values()) >= 0
        assert glue < 0.3 * total, f"{cfg.arch_id}: {glue / total:.0%} of the time left unattributed"
        convs = [op.name for op in operators(cfg) if op.kind in ("conv", "pwconv", "linear")]
        assert sum(per[n] > 0 for n in convs) >= 0.9 * len(convs)  # the big kernels are found by name


def test_the_composed_model_beats_macs_on_networks_it_never_saw(host_ops):
    cfgs, y, profiles = host_ops
    n = 100
    ops = OperatorLatencyModel(n_estimators=30, n_folds_sigma=0).fit(cfgs[:n], y[:n], profiles=profiles[:n])
    macs = METHODS["macs"](n_folds_sigma=0).fit(cfgs[:n], y[:n])
    mo = regression_metrics(y[n:], ops.predict(cfgs[n:])[0])
    mm = regression_metrics(y[n:], macs.predict(cfgs[n:])[0])
    assert mo.within_10 > mm.within_10 and mo.kendall_tau > mm.kendall_tau and mo.rmse < mm.rmse


def test_fitting_without_profiles_is_refused_in_one_line(host_ops):
    cfgs, y, profiles = host_ops
    with pytest.raises(ValueError, match="profiles: the operator model needs") as e:
        OperatorLatencyModel().fit(cfgs[:10], y[:10])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="profiles"):
        OperatorLatencyModel().fit(cfgs[:10], y[:10], profiles=profiles[:9])
    assert np.all(np.isfinite(y))


def test_profiling_overhead_is_what_a_node_that_does_no_work_costs(host_ops):
    _, y, profiles = host_ops
    d = profiling_overhead_us(profiles, y)
    idle = [float(n["median_us"]) for p in profiles for n in p if n["op_type"] in NO_WORK_OPS]
    assert len(idle) >= 20 and d == pytest.approx(float(np.median(idle)))
    assert 0 < d < np.percentile([float(n["median_us"]) for p in profiles for n in p], 50)
    # Without no-work nodes it falls back to the profile totals: built with a known 3 us per node,
    # the regression finds it.
    rng = np.random.default_rng(0)
    fake, ys = [], []
    for _ in range(30):
        work = rng.uniform(5, 200, size=int(rng.integers(100, 600)))
        fake.append([{"op_type": "Conv", "median_us": w + 3.0} for w in work])
        ys.append(work.sum() / 1e3)
    assert profiling_overhead_us(fake, ys) == pytest.approx(3.0, abs=0.2)
    # and the fitted model carries it through its JSON
    cfgs = host_ops[0]
    m = OperatorLatencyModel(n_estimators=10, n_folds_sigma=0).fit(cfgs[:40], y[:40], profiles=profiles[:40])
    back = OperatorLatencyModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert m.profiling_overhead_us_ == pytest.approx(profiling_overhead_us(profiles[:40], y[:40]))
    assert back.profiling_overhead_us_ == m.profiling_overhead_us_
    assert np.allclose(back.predict(cfgs[40:45])[0], m.predict(cfgs[40:45])[0])
