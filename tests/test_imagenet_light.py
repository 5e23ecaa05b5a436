"""Real ImageNet-1k as the yardstick: the selection rule over timm's published results, the rank
statistics with family-bootstrap intervals, the evaluation (``nas proxy eval --bench imagenet-light``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from public_benchmarks import imagenet_light as L

STORED = Path(__file__).resolve().parents[1] / "bench" / "results" / "proxies_imagenet.json"


def test_selection_keeps_imagenet_1k_only_results_at_their_own_resolution():
    rows, dropped = L.select_rows()
    assert len(rows) > 100
    for r in rows:
        assert r.tag.endswith("in1k") and not any(m in r.tag for m in L.EXTRA_DATA), r.model
        assert r.param_count_m <= L.MAX_PARAMS_M and re.fullmatch(L.FAMILIES[r.family], r.arch)
    assert len({(r.key, r.img_size) for r in rows}) == len(rows)  # one row per architecture and resolution
    why = dict(dropped)
    assert "in22k" in "mobilevitv2_150.cvnets_in22k_ft_in1k" and "more than ImageNet-1k" in why[
        "mobilevitv2_150.cvnets_in22k_ft_in1k"]
    assert "test-time resolution 320" in why["mobilenetv4_conv_medium.e500_r256_in1k"]
    # the TF port and timm's own EfficientNet-B0 are one architecture: the better published result stays
    b0 = [r for r in rows if r.key == "efficientnet_b0"]
    assert len(b0) == 1 and b0[0].top1 == max(x.top1 for x in rows if x.key == "efficientnet_b0")
    assert {r.distilled for r in rows if r.family == "repvit"} == {True}  # kept, flagged
    assert [r.top1 for r in L.edgevit_rows()] == [74.4, 77.5, 81.0]


def test_rank_statistics_separate_within_from_across_families():
    # two families: inside each, the score orders top-1 perfectly; across them it is reversed
    score = [1, 2, 3, 4, 11, 12, 13, 14]
    top1 = [60, 61, 62, 63, 50, 51, 52, 53]
    fam = ["a"] * 4 + ["b"] * 4
    st = L.rank_stats({"s": score, "params": score}, top1, fam, n_boot=50)["s"]
    assert st.within == 1.0 and st.across == -1.0 and st.within_pairs == 12 and st.across_pairs == 16
    assert st.n == 8 and st.minus_params == 0.0 and st.kendall_ci[0] <= st.kendall <= st.kendall_ci[1]
    nan = L.rank_stats({"s": [np.nan] * 8, "params": score}, top1, fam, n_boot=10)["s"]
    assert np.isnan(nan.kendall) and nan.n == 0


def test_stored_scores_reproduce_the_stored_table():
    stored = json.loads(STORED.read_text())
    r = L.evaluate(scores_from=STORED, n_boot=20)
    for setname, rows in stored["correlations"].items():
        for row, st in rows.items():
            assert r.stats[setname][row].kendall == pytest.approx(st["kendall"], nan_ok=True), (setname, row)
            assert r.stats[setname][row].within == pytest.approx(st["within"], nan_ok=True), (setname, row)
    assert r.search_default in r.rows and "edgevit" in {m["family"] for m in r.models}


def test_small_networks_are_scored_for_real():
    r = L.evaluate(families=["lcnet"], proxies=("params", "macs"), n_boot=10)
    assert not r.failed and len(r.models) == 3
    for m in r.models:
        assert r.scores[m["model"]]["params"] == m["params"]  # the built network is the counted one
    assert r.stats["main"]["params"].n == 3 and np.isfinite(r.stats["main"][L.PRIOR_ROW].kendall)


def test_edgevit_counts_equal_the_analytic_cost_and_the_graph_depth():
    import torch

    from predictors.accuracy.prior import row_of
    from search_space import PRESETS, cost

    cfg = PRESETS["edgevit_xxs"]
    torch.manual_seed(0)
    c = L.count_network(L.build_network("edgevit_xxs", 224), 224)
    assert (c.params, c.macs) == (cost(cfg).params, cost(cfg).macs) and c.depth == row_of(cfg).depth


def test_cli_recomputes_from_stored_scores_and_refuses_unused_flags(capsys, tmp_path):
    from nas.cli import main

    out = tmp_path / "r.json"
    assert main(["proxy", "eval", "--bench", "imagenet-light", "--scores-from", str(STORED), "--bootstrap", "10",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "within-family" in text and "prior" in text and "main" in text
    assert json.loads(out.read_text())["bench"] == "imagenet-light"
    assert main(["proxy", "eval", "--bench", "imagenet-light", "--img-size", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--img-size" in err and "\n" not in err
