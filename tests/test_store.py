"""The measurement store: idempotent upserts, clean rows protected, CSV exchange, concurrent writers."""
import csv

import pytest

from device_farm import Measurement, MeasurementStore, StoreError
from search_space import DEFAULT_SPACE

# Real configurations, so that every row is a valid measurement (import checks the id against the config).
_CFGS = DEFAULT_SPACE.sample_distinct(20, seed=5)
_NAMES: dict[str, int] = {}


def ID(name: str) -> str:
    """The architecture id standing for ``name`` in a test."""
    return _cfg(name).arch_id


def _cfg(name: str):
    return _CFGS[_NAMES.setdefault(name, len(_NAMES))]


def _m(arch="a1", status="ok", median=10.0, device="host", **kw):
    cfg = _cfg(arch)
    return Measurement(arch_id=cfg.arch_id, device=device, runtime="onnxruntime", runtime_version="1.0",
                       input_shape=f"1x3x{cfg.resolution}x{cfg.resolution}", threads=1, precision="fp32",
                       status=status, median_ms=median if status != "failed" else None,
                       error="boom" if status == "failed" else None, env={"cpu": "x"}, config=cfg.to_dict(), **kw)


def test_round_trip_keeps_every_field(tmp_path):
    s = MeasurementStore(tmp_path / "m.sqlite")
    m = _m(p10_ms=9.5, p90_ms=11.0, candle_ms=2.0, candle_ratio=5.0, energy_mj=None)
    assert s.put(m)
    (back,) = s.query(device="host")
    assert back == m


def test_same_measurement_twice_is_one_row(tmp_path):
    s = MeasurementStore(tmp_path / "m.sqlite")
    s.put(_m(median=10.0))
    s.put(_m(median=10.5))
    assert len(s) == 1 and s.query()[0].median_ms == 10.5
    s.put(_m(device="other"))
    assert len(s) == 2 and s.counts() == {"host": {"ok": 1}, "other": {"ok": 1}}


def test_failure_never_replaces_a_clean_value_but_clean_replaces_failure(tmp_path):
    s = MeasurementStore(tmp_path / "m.sqlite")
    s.put(_m(median=10.0))
    assert not s.put(_m(status="failed"))
    assert not s.put(_m(status="disturbed", median=30.0))
    assert s.query()[0].status == "ok" and s.query()[0].median_ms == 10.0
    s.put(_m(arch="b", status="failed"))
    assert s.put(_m(arch="b", median=7.0))
    assert s.query(arch_id=ID("b"))[0].status == "ok"


def test_csv_export_import_round_trip_with_provenance(tmp_path):
    a = MeasurementStore(tmp_path / "a.sqlite")
    a.put_many([_m(arch=f"x{i}", median=1.0 + i, source="measured:box") for i in range(5)] + [_m(arch="f", status="failed")])
    assert a.export_csv(tmp_path / "out.csv") == 6
    b = MeasurementStore(tmp_path / "b.sqlite")
    assert b.import_csv(tmp_path / "out.csv") == 6
    assert sorted((m.arch_id, m.median_ms, m.source, m.status) for m in b) == sorted(
        (m.arch_id, m.median_ms, m.source, m.status) for m in a)
    assert b.query(arch_id=ID("x3"))[0].env == {"cpu": "x"}


def test_import_from_another_tool_gets_provenance_and_validation(tmp_path):
    f = tmp_path / "phone_app.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch_id", "device", "runtime", "runtime_version", "input_shape", "threads", "precision", "status",
                    "median_ms", "energy_mj"])
        w.writerow([ID("abc"), "s21", "tflite", "2.16", "1x3x224x224", "1", "fp32", "ok", "31.5", "42.0"])
    s = MeasurementStore(tmp_path / "m.sqlite")
    assert s.import_csv(f) == 1
    m = s.query(device="s21")[0]
    assert m.source == "import:phone_app.csv" and m.energy_mj == 42.0 and m.threads == 1


_HEADER = ["arch_id", "device", "runtime", "runtime_version", "input_shape", "threads", "precision", "status", "median_ms"]


@pytest.mark.parametrize("header,row,words", [
    (["arch_id", "device"], ["a", "b"], "missing column 'runtime'"),
    (_HEADER + ["speed"], [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "3", "3"], "unknown column 'speed'"),
    (_HEADER[:-1], [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok"], "median_ms is empty"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "great", "3"], "status='great'"),
    (_HEADER, ["a", "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "3"], "arch_id='a': must be 12 lowercase hex"),
    (_HEADER, [ID("r"), "d", "r", "1", "s", "1", "fp32", "ok", "3"], "input_shape='s'"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "two", "fp32", "ok", "3"], "threads='two'"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "-5"], "median_ms='-5': must be > 0"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "inf"], "median_ms='inf': must be a finite"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "nan"], "median_ms='nan': must be a finite"),
    (_HEADER, [ID("r"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "fast"], "median_ms='fast': not a number"),
    (_HEADER, [ID("g"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "3"], "the same measurement key as line 2"),
])
def test_bad_import_is_rejected_whole_and_store_is_untouched(tmp_path, header, row, words):
    s = MeasurementStore(tmp_path / "m.sqlite")
    s.put(_m())
    good = [ID("g"), "d", "r", "1", "1x3x224x224", "1", "fp32", "ok", "1"][: len(header)]
    f = tmp_path / "bad.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerow(good)
        w.writerow(row)
    with pytest.raises(StoreError, match=words):
        s.import_csv(f)
    assert [m.arch_id for m in s] == [ID("a1")]


@pytest.mark.parametrize("config,words", [
    ("[1, 2]", "config is a JSON list; must be a JSON object"),
    ("{not json", "not valid JSON"),
    ('{"stages": []}', "config: stages=0: needs exactly 4 stages"),
    ("OTHER", "does not match its config, whose id is"),
    ("WRONG_RES", "does not match the config's resolution"),
])
def test_import_checks_the_configuration_and_its_id(tmp_path, config, words):
    cfg, other = _cfg("c1"), _cfg("c2")
    shape = f"1x3x{cfg.resolution}x{cfg.resolution}"
    if config == "OTHER":
        config = other.to_json(indent=None)
    elif config == "WRONG_RES":
        shape = "1x3x999x999"
        config = cfg.to_json(indent=None)
    f = tmp_path / "c.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_HEADER + ["config"])
        w.writerow([cfg.arch_id, "host", "onnxruntime", "1.0", shape, "1", "fp32", "ok", "3.5", config])
    s = MeasurementStore(tmp_path / "m.sqlite")
    with pytest.raises(StoreError, match=words) as exc:
        s.import_csv(f)
    assert str(exc.value).startswith(f"{f}:2: ") and "\n" not in str(exc.value)
    assert len(s) == 0


def test_four_ray_workers_writing_at_once_lose_no_row(tmp_path, ray_local):
    import ray

    path = str(tmp_path / "m.sqlite")
    MeasurementStore(path)

    @ray.remote(num_cpus=0)
    def writer(worker: int, n: int) -> int:
        # Only package imports here: the test module itself is not importable on Ray workers.
        from device_farm import Measurement as M, MeasurementStore as Store

        store = Store(path)
        for i in range(n):
            store.put(M(arch_id=f"{worker:06d}{i:06d}", device="host", runtime="onnxruntime", runtime_version="1.0",
                        input_shape="1x3x224x224", threads=1, precision="fp32", status="ok", median_ms=float(i)))
        return n

    assert sum(ray.get([writer.remote(w, 40) for w in range(4)])) == 160
    s = MeasurementStore(path)
    assert len(s) == 160
    assert {m.arch_id for m in s} == {f"{w:06d}{i:06d}" for w in range(4) for i in range(40)}
