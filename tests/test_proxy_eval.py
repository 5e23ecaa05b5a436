"""Proxies against trained accuracy on the public benchmarks: ``public_benchmarks.proxy_eval`` and
``nas proxy eval`` (the benchmarks' data ship with the package)."""
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from predictors.accuracy import proxies as P
from public_benchmarks.proxy_eval import evaluate

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
VIT_JSON, NB201_JSON = RESULTS / "proxies_vitbench.json", RESULTS / "proxies_nb201.json"


def nas(*args):
    """``nas ARGS`` through the console script's entry point in this process (test_cli.py runs the
    installed script once for real): exit status, stdout, stderr."""
    from test_cli import nas as run

    return run(*args, check=False)


def default_name() -> str:
    return "default (" + "+".join(P.DEFAULT_PROXIES) + ")"


def test_vitbench_eval_scores_real_networks_and_has_the_default_line():
    # four networks per space, scored for real; only the cheap proxies beside the default set
    r = evaluate("vit-bench-101", limit=4, proxies=("params", "macs"), cost_networks=1)
    assert set(r.groups) == {"autoformer", "autoformer_2", "pit"} and r.default_name == default_name()
    assert r.rows[-1] == default_name() and set(P.DEFAULT_PROXIES) <= set(r.proxies)
    for g in r.groups.values():
        assert g.n == 4 and "cifar100_distill" in g.targets
        for t in g.targets:
            assert math.isfinite(g.correlations["params"][t].kendall), (g.name, t)
            assert math.isfinite(g.correlations[default_name()][t].kendall), (g.name, t)
        assert g.seconds_per_network[default_name()] > 0
    d = r.to_dict()
    assert d["default_proxies"] == list(P.DEFAULT_PROXIES)
    assert "default" in d["results"]["pit"]["correlations"]["cifar100"] and len(d["results"]["pit"]["scores"]) == 4


def test_cli_eval_nb201_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "nb201.json"
    proc = nas("proxy", "eval", "--bench", "nb201", "--limit", "12", "--cost-networks", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for word in ("params", "macs", "synflow", "zico", default_name(), "beats #params", "cifar10", "ImageNet16-120",
                 "s/net", "NASLib"):
        assert word in proc.stdout, word
    d = json.loads(out.read_text())
    assert d["protocol"]["cells"] == 12 and len(d["scores"]) == 12
    c = d["correlation_vs_val_accuracy"]
    assert math.isfinite(c["params"]["cifar10"]["kendall"]) and "default" in c
    assert d["cost_per_net_nb201_s"]["default"] > 0


def test_scores_from_reproduces_the_stored_vitbench_correlations():
    stored = json.loads(VIT_JSON.read_text())
    r = evaluate("vit-bench-101", scores_from=VIT_JSON, cost_networks=0)
    d = r.to_dict()
    same_default = stored["default_proxies"] == list(P.DEFAULT_PROXIES)
    for space, res in stored["results"].items():
        for col, rows in res["correlations"].items():
            for n, c in rows.items():
                if n == "default" and not same_default:
                    continue
                assert d["results"][space]["correlations"][col][n] == pytest.approx(c, abs=1e-12), (space, col, n)
    # the default line is the rank aggregation of the current DEFAULT_PROXIES over each space's raw scores
    g = r.groups["autoformer"]
    agg = P.aggregate(g.scores, P.DEFAULT_PROXIES)
    keys = [k for k in g.scores if "cifar100_distill" in g.accuracy[k]]
    tau = kendalltau([agg[k] for k in keys], [g.accuracy[k]["cifar100_distill"] for k in keys])[0]
    assert g.correlations[default_name()]["cifar100_distill"].kendall == pytest.approx(tau, abs=1e-12)


def test_scores_from_reproduces_the_stored_nb201_correlations():
    stored = json.loads(NB201_JSON.read_text())
    d = evaluate("nb201", scores_from=NB201_JSON, cost_networks=0).to_dict()
    for n, per_ds in stored["correlation_vs_val_accuracy"].items():
        if n.startswith("DEFAULT") or n == "default":
            continue
        for ds, c in per_ds.items():
            new = d["correlation_vs_val_accuracy"][n][ds]
            assert (new["kendall"], new["spearman"]) == pytest.approx((c["kendall"], c["spearman"]), abs=1e-12)
    for n, per_ds in stored["spearman_ours_vs_naslib_stored"].items():
        assert d["spearman_ours_vs_naslib_stored"][n] == pytest.approx(per_ds, abs=1e-12)
    assert d["nan_count"] == {n: stored["nan_count"][n] for n in d["nan_count"]}
    assert np.isfinite(d["correlation_vs_val_accuracy"]["default"]["cifar100"]["kendall"])


def test_default_row_is_bold_in_the_printed_table():
    from rich.console import Console

    from nas.proxy_cli import print_eval

    r = evaluate("vit-bench-101", scores_from=VIT_JSON, cost_networks=0)
    buf = io.StringIO()
    print_eval(r, Console(file=buf, force_terminal=True, width=200, color_system="standard"))
    text = buf.getvalue()
    rows = [line for line in text.splitlines() if default_name() in line and "beats" not in line]
    assert len(rows) == 3 and all("\x1b[1m" in line for line in rows)
    assert not any("\x1b[1m" in line for line in text.splitlines() if "│ params " in line)


def test_unknown_bench_is_one_line_with_exit_2():
    proc = nas("proxy", "eval", "--bench", "nb301")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--bench='nb301'" in proc.stderr and "vit-bench-101, nb201" in proc.stderr


def test_missing_data_names_the_path_and_how_to_set_it(tmp_path):
    proc = nas("proxy", "eval", "--bench", "nb201", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert str(tmp_path / "nb201-zero-cost" / "zc_nasbench201.json") in proc.stderr
    assert "EDGEVIT_NAS_SHARED_DATA" in proc.stderr and "--data-dir" in proc.stderr
