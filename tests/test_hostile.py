"""Hostile input and hostile conditions (issue #17), probed through the real ``nas`` command line.

Every probe asserts the same four things: one line on stderr that names the cause (never a
traceback), a non-zero exit status, a time bound (generous: a guard against hangs, not a
benchmark), and that nothing stored changed. Probes that could hang, exhaust memory or need a
changed process (limits, another user, a private full disk) run in ``hostile_child.py`` under a
timeout; the rest run in this process through ``nas.cli.main``.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_farm import MeasurementStore
from nas.cli import main
from search_space import PRESETS

DATA = Path(__file__).parent / "data" / "host_measurements.csv"
CHILD = Path(__file__).parent / "hostile_child.py"
ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 10.0  # hang guard for one in-process probe


@dataclass
class Result:
    rc: int | str
    out: str
    err: str
    seconds: float


def nas(argv: list[str], capsys) -> Result:
    capsys.readouterr()
    t0 = time.perf_counter()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exits
        rc = e.code
    seconds = time.perf_counter() - t0
    cap = capsys.readouterr()
    return Result(rc, cap.out, cap.err, seconds)


def assert_refused(r: Result | dict, *words: str, rc: int | None = 2, limit_s: float = LIMIT_S) -> str:
    """One line naming the cause (``words``), a non-zero exit (``rc`` when given), within the time bound."""
    if isinstance(r, dict):
        r = Result(r["rc"], r.get("out", ""), r["err"], r["seconds"])
    err = r.err.strip()
    assert "Traceback" not in err and "Traceback" not in r.out, err
    assert err.count("\n") == 0 and err.startswith("nas"), err
    assert isinstance(r.rc, int) and r.rc != 0, (r.rc, err)
    if rc is not None:
        assert r.rc == rc, (r.rc, err)
    for w in words:
        assert w in err, (w, err)
    assert r.seconds < limit_s, (r.seconds, err)
    return err


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def child(spec: dict, tmp: Path, timeout: float = 120, wrap: list[str] | None = None) -> dict:
    """Run ``hostile_child.py`` on ``spec``; a hang or a crash fails the test here."""
    spec_file = tmp / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [*(wrap or []), sys.executable, str(CHILD), str(spec_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def xxs() -> dict:
    return PRESETS["edgevit_xxs"].to_dict()


# ------------------------------------------------------------------------------ configurations
def _with(mutate) -> bytes:
    d = xxs()
    mutate(d)
    return json.dumps(d).encode()


CONFIG_FILES = {
    # name: (file content, words the one line must hold)
    "nan": (json.dumps(xxs()).replace('"mlp_ratio": 4', '"mlp_ratio": NaN', 1).encode(), "NaN is not a finite number"),
    "infinity": (json.dumps(xxs()).replace('"mlp_ratio": 4', '"mlp_ratio": Infinity', 1).encode(), "Infinity"),
    "1e308": (json.dumps(xxs()).replace('"mlp_ratio": 4', '"mlp_ratio": 1e308', 1).encode(),
              "stages[0].mlp_ratio=1e+308: must be a finite number > 0 and <= 32"),
    "1e999": (json.dumps(xxs()).replace('"mlp_ratio": 4', '"mlp_ratio": 1e999', 1).encode(), "not a finite number"),
    "5000_digits": (json.dumps(xxs()).replace('"num_classes": 1000', '"num_classes": ' + "9" * 5000, 1).encode(),
                    "an integer of 5000 digits"),
    "utf16": (json.dumps(xxs()).encode("utf-16"), "not UTF-8 text"),
    "binary": (bytes(range(256)) * 8, "not UTF-8 text"),
    "nested_200000": (b"[" * 200_000 + b"]" * 200_000, "JSON nested too deeply"),
    "huge_file": (b'{"name": "' + b"x" * 3_000_000 + b'"}', "more than the 1,048,576 allowed"),
    "truncated": (json.dumps(xxs()).encode()[:100], "not valid JSON"),
    "list": (b"[1, 2]", "config=[1, 2]: must be a JSON object"),
    "depth_1e7": (_with(lambda d: (d["stages"][0].pop("blocks"), d["stages"][0].update(depth=10_000_000))),
                  "stages[0].depth=10000000: must be an integer >= 1 and <= 64"),
    "width_1e12": (_with(lambda d: d["stages"][0].update(width=10**12)), "stages[0].width=1000000000000"),
    "resolution_3e10": (_with(lambda d: d.update(resolution=29_999_999_968)), "resolution=29999999968"),
    "bad_kind": (_with(lambda d: d["stages"][0].update(blocks=["conv"])), "allowed: lgl, local, global"),
}


@pytest.mark.parametrize("command", ["validate", "show"])
@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_space_refuses_a_hostile_configuration_in_one_line(tmp_path, capsys, command, case):
    content, words = CONFIG_FILES[case]
    f = tmp_path / f"{case}.json"
    f.write_bytes(content)
    before = snapshot(tmp_path)
    err = assert_refused(nas(["space", command, f], capsys), words)
    assert str(f) in err or f.name in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("spec,words", [
    ("missing.json", "neither a preset"),
    ("folder.json", "must be a .json file"),
    ("edgevit_xl", "edgevit_xxs, edgevit_xs, edgevit_s"),
])
def test_space_refuses_missing_files_and_folders(tmp_path, capsys, monkeypatch, spec, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.json").mkdir()
    assert_refused(nas(["space", "validate", spec], capsys), words)


# ------------------------------------------------------------------------------ farm import
def _shipped_rows(n: int) -> tuple[list[str], list[dict[str, str]]]:
    with open(DATA, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r, _ in zip(reader, range(n))]
        return list(reader.fieldnames or []), rows


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    """A store holding the first 25 shipped measurements, imported through the CLI."""
    folder = tmp_path_factory.mktemp("store")
    header, rows = _shipped_rows(25)
    src = _write_csv(folder / "first25.csv", header, rows)
    assert main(["farm", "import", str(src), "--store", str(folder / "m.sqlite")]) == 0
    src.unlink()
    return folder / "m.sqlite"


def _other_config() -> str:
    return PRESETS["edgevit_s"].to_json(indent=None)


IMPORT_ROWS = {
    # name: (mutation of one shipped row, words)
    "median_negative": (lambda r: r.update(median_ms="-5"), "median_ms='-5': must be > 0"),
    "median_inf": (lambda r: r.update(median_ms="inf"), "median_ms='inf': must be a finite number"),
    "median_nan": (lambda r: r.update(median_ms="NaN"), "median_ms='NaN': must be a finite number"),
    "median_1e999": (lambda r: r.update(median_ms="1e999"), "must be a finite number"),
    "median_text": (lambda r: r.update(median_ms="fast"), "median_ms='fast': not a number"),
    "p90_text": (lambda r: r.update(p90_ms="[1]"), "p90_ms='[1]': not a number"),
    "threads_fraction": (lambda r: r.update(threads="1.5"), "threads='1.5': must be an integer"),
    "status_unknown": (lambda r: r.update(status="great"), "status='great': allowed: ok, disturbed, failed"),
    "config_list": (lambda r: r.update(config="[1, 2]"), "config is a JSON list; must be a JSON object"),
    "config_not_json": (lambda r: r.update(config="{not json"), "config: not valid JSON"),
    "config_nan": (lambda r: r.update(config=re.sub(r'"mlp_ratio": [0-9.]+', '"mlp_ratio": NaN', r["config"], 1)),
                   "NaN is not a finite number"),
    "config_invalid": (lambda r: r.update(config=json.dumps({"stages": [{"width": 100, "depth": 1, "head_dim": 48}] * 4})),
                       "config: stages[0].head_dim=48: must divide width 100"),
    "arch_id_mismatch": (lambda r: r.update(config=_other_config()), "does not match its config, whose id is"),
    "arch_id_format": (lambda r: r.update(arch_id="../../etc"), "arch_id='../../etc': must be 12 lowercase hex"),
    "field_200kB": (lambda r: r.update(error="x" * 200_000), "a field longer than the 65,536 characters allowed"),
    "field_100kB": (lambda r: r.update(error="x" * 100_000), "error is 100,000 characters, more than the 65,536"),
    "key_empty": (lambda r: r.update(device=""), "device is empty"),
}


@pytest.mark.parametrize("case", list(IMPORT_ROWS))
def test_farm_import_refuses_a_bad_row_and_changes_nothing(tmp_path, capsys, base_store, case):
    mutate, words = IMPORT_ROWS[case]
    store = tmp_path / "store" / "m.sqlite"
    store.parent.mkdir()
    shutil.copy(base_store, store)
    header, rows = _shipped_rows(40)
    rows = rows[25:]  # 15 new, valid rows...
    mutate(rows[7])  # ...one of which is bad
    f = _write_csv(tmp_path / "phone.csv", header, rows)
    before = snapshot(store.parent)
    err = assert_refused(nas(["farm", "import", f, "--store", store], capsys), words)
    assert err.startswith(f"nas: error: {f}:9: "), err  # file and line (line 1 is the header)
    assert snapshot(store.parent) == before  # byte for byte: all or nothing


def _utf16(tmp: Path) -> Path:
    p = tmp / "u16.csv"
    p.write_bytes(DATA.read_text().encode("utf-16"))
    return p


IMPORT_FILES = {
    "binary": (lambda t: (t / "bin.csv").write_bytes(bytes(range(256)) * 40) and t / "bin.csv", "not UTF-8 text"),
    "nul_bytes": (lambda t: (t / "nul.csv").write_bytes(b"arch_id,device\x00\n") and t / "nul.csv", "a NUL character"),
    "utf16": (_utf16, "not UTF-8 text"),
    "missing": (lambda t: t / "missing.csv", "no such file"),
    "directory": (lambda t: (t / "d.csv").mkdir() or t / "d.csv", "is a directory"),
    "empty": (lambda t: (t / "e.csv").write_text("") or t / "e.csv", "empty; expected a header row"),
    "header_only_other": (lambda t: (t / "h.csv").write_text("speed\n1\n") and t / "h.csv", "missing column 'arch_id'"),
}


@pytest.mark.parametrize("case", list(IMPORT_FILES))
def test_farm_import_refuses_a_bad_file_and_changes_nothing(tmp_path, capsys, base_store, case):
    make, words = IMPORT_FILES[case]
    store = tmp_path / "store" / "m.sqlite"
    store.parent.mkdir()
    shutil.copy(base_store, store)
    f = make(tmp_path)
    before = snapshot(store.parent)
    assert_refused(nas(["farm", "import", f, "--store", store], capsys), words)
    assert snapshot(store.parent) == before


def test_a_refused_import_leaves_a_store_that_trains(tmp_path, capsys, base_store):
    store = tmp_path / "m.sqlite"
    shutil.copy(base_store, store)
    header, rows = _shipped_rows(30)
    bad = rows[25:]
    bad[2]["median_ms"] = "-5"
    assert_refused(nas(["farm", "import", _write_csv(tmp_path / "bad.csv", header, bad), "--store", store], capsys))
    r = nas(["predictor", "train", "--device", "host", "--store", store, "--out", tmp_path / "p.json"], capsys)
    assert r.rc == 0 and "saved" in r.out and (tmp_path / "p.json").stat().st_size > 0, r.err
    # a new store is not even created by a refused import
    assert_refused(nas(["farm", "import", tmp_path / "bad.csv", "--store", tmp_path / "new" / "m.sqlite"], capsys))
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------ predictor files
@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_store) -> Path:
    """A real tree model (kind kernel_corr: NNLS kernel sum plus gradient-boosted trees) saved by the CLI."""
    folder = tmp_path_factory.mktemp("pred")
    out = folder / "host-latency.json"
    assert main(["predictor", "train", "--device", "host", "--store", str(base_store), "--method", "kernel_corr",
                 "--out", str(out)]) == 0
    return out


def _trees(d: dict) -> dict:
    return d["estimator"]["state"]["trees"]


TAMPERED = {
    # name: (change of the parsed file, or of its text; words)
    "truncated": ("text", lambda t: t[: len(t) // 2], "not valid JSON"),
    "not_an_object": ("json", lambda d: [1, 2], "expected a JSON object"),
    "estimator_wrong_type": ("json", lambda d: d.update(estimator="kernel") or d, "expected a JSON object"),
    "unknown_kind": ("json", lambda d: d["estimator"].update(kind="pickle") or d, "kind='pickle': not a model kind"),
    "state_wrong_type": ("json", lambda d: d["estimator"].update(state=[]) or d, "must be JSON objects"),
    "comparison_wrong_type": ("json", lambda d: d.update(comparison={"kernel": 5}) or d, "comparison.kernel"),
    "two_million_trees": ("json", lambda d: _trees(d).update(trees=[0] * 2_000_000) or d, "at most 20000 trees"),
    "huge_n_features": ("json", lambda d: _trees(d).update(n_features=10**12) or d, "n_features=1000000000000"),
    "cyclic_tree": ("json", lambda d: _trees(d)["trees"][0]["right"].__setitem__(0, 0) or d, "cycle"),
    "tree_value_text": ("json", lambda d: _trees(d)["trees"][0]["value"].__setitem__(1, "x") or d,
                        "arrays must hold numbers"),
    "nan_threshold": ("json", lambda d: _trees(d)["trees"][0]["threshold"].__setitem__(0, float("nan")) or d,
                      "thresholds and values must be finite"),
    "other_version": ("json", lambda d: d.update(format_version=99) or d, "format_version=99"),
    "target_unknown": ("json", lambda d: d.update(target="speed") or d, "target='speed'"),
}


def _tamper(trained: Path, case: str, dest: Path) -> None:
    how, change, _ = TAMPERED[case]
    text = trained.read_text()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(change(text) if how == "text" else json.dumps(change(json.loads(text))))


def test_trained_model_has_trees_to_tamper_with(trained):
    assert len(_trees(json.loads(trained.read_text()))["trees"]) > 10


@pytest.mark.parametrize("case", list(TAMPERED))
def test_predictor_show_and_predict_refuse_a_tampered_file(tmp_path, capsys, monkeypatch, trained, case):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "runs" / "predictors" / "host-latency.json"
    _tamper(trained, case, path)
    before = snapshot(tmp_path)
    words = TAMPERED[case][2]
    assert_refused(nas(["predictor", "show", path], capsys), words, str(path))
    assert_refused(nas(["predictor", "predict", "--device", "host", "edgevit_xxs"], capsys), words)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ the command line itself
@pytest.mark.parametrize("argv,words", [
    (["space", "sample", "-n", "x"], "argument -n: invalid int value: 'x'"),
    (["space", "sample", "-n", "0"], "-n=0: must be an integer >= 1"),
    (["farm", "sample", "--device", "host", "-n", "1e9"], "invalid int value"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["space", "validate"], "the following arguments are required: configs"),
    (["predictor", "train", "--device", "host", "--target", "speed"], "invalid choice: 'speed'"),
    (["farm", "measure", "--device", "toaster", "edgevit_xxs"], "toaster"),
    (["predictor", "show", "nowhere.json"], "no such file"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert_refused(nas(argv, capsys), words)
    assert list(tmp_path.iterdir()) == []


def test_a_bug_is_one_line_with_a_debug_hint_and_a_traceback_only_with_debug(capsys, monkeypatch):
    from nas import space_cli

    def broken(cfg):  # a fault injected into a real command
        raise ZeroDivisionError("division by zero in cost")

    monkeypatch.setattr(space_cli, "cost", broken)
    err = assert_refused(nas(["space", "validate", "edgevit_xxs"], capsys), "internal error, a bug", "ZeroDivisionError",
                         "--debug", rc=70)
    assert "division by zero in cost" in err
    with pytest.raises(ZeroDivisionError):
        main(["space", "validate", "edgevit_xxs", "--debug"])
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "space", "validate", "edgevit_xxs"])


def test_os_and_database_errors_are_explained_with_what_to_do():
    from argparse import Namespace

    from nas.errors import explain

    search = Namespace(group="search", command=None, resume=Path("runs/host-1"), run_id=None, out=None)
    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "runs/x.json"), None, ("disk full (runs/x.json)", "free space")),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), None, ("read-only file system (/mnt/ro)",)),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), None, ("permission denied (/root/x)",)),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.csv"), None, ("no such file", "a.csv")),
        (sqlite3.OperationalError("database or disk is full"), search,
         ("database or disk is full", "nas search --resume runs/host-1")),
        (sqlite3.OperationalError("attempt to write a readonly database"), None, ("read-only",)),
        (sqlite3.DatabaseError("file is not a database"), None, ("not a usable SQLite database",)),
        (MemoryError(), None, ("out of memory",)),
    ]
    for exc, args, words in cases:
        line, status = explain(exc, args)
        assert status in (1, 2) and "\n" not in line, line
        for w in words:
            assert w in line, (w, line)


# ------------------------------------------------------------------------------ in a process of their own
HANG_PROBES = ("depth_1e7", "width_1e12", "resolution_3e10", "5000_digits", "nested_200000")


def _disk_steps(disk: Path, csv_file: Path, base_store: Path, full_fs: bool) -> tuple[list[dict], dict, list[str]]:
    """Steps that meet a full disk while importing (and writing), the words each line must hold, and
    the second command. ``full_fs``: a real full file system; else a limit on each file's size."""
    steps: list[dict] = [{"do": "copy", "src": str(base_store), "dst": str(disk / "m.sqlite")}]
    if full_fs:  # ENOSPC, SQLite's "database or disk is full"; many small files fill it too
        steps.append({"do": "fill", "dir": str(disk), "leave": 48 * 1024})
        words = {"import": "database or disk is full", "write": "disk full"}
        write = ["space", "sample", "-n", "400", "--out", str(disk / "s")]
    else:  # EFBIG, SQLite's "disk I/O error": one large file (an export of 25 rows, 44 kB) meets the limit,
        steps.append({"do": "limit_file_size", "bytes": 36_123})  # the store's 32 kB index file fits under it
        words = {"import": "disk I/O error", "write": "file too large"}
        write = ["farm", "export", str(disk / "out.csv"), "--store", str(disk / "m.sqlite")]
    steps += [{"do": "snapshot", "name": "before", "dir": str(disk)},
              {"do": "nas", "name": "import", "argv": ["farm", "import", str(csv_file), "--store", str(disk / "m.sqlite")]},
              {"do": "nas", "name": "write", "argv": write}]
    return steps, words, write


@pytest.fixture(scope="module")
def limited(tmp_path_factory, trained, base_store) -> dict:
    """One process for the probes under limits: memory capped at +1.5 GB for the inputs that hung (a
    divisor walk to 10^12) or took 10.5 GB (depth 10^7) and a cyclic tree, then a file-size limit for
    the disk probes. A regression dies here in one run, not in the suite."""
    tmp = tmp_path_factory.mktemp("limits")
    steps: list[dict] = [{"do": "limit_memory", "extra_mb": 1536}]
    for name in HANG_PROBES:
        (tmp / f"{name}.json").write_bytes(CONFIG_FILES[name][0])
        steps.append({"do": "nas", "name": name, "argv": ["space", "validate", f"{name}.json"]})
    _tamper(trained, "cyclic_tree", tmp / "runs" / "predictors" / "host-latency.json")
    steps.append({"do": "nas", "name": "cyclic_tree", "argv": ["predictor", "predict", "--device", "host", "edgevit_s"]})
    header, rows = _shipped_rows(300)
    disk = tmp / "disk"
    disk.mkdir()
    disk_steps, words, _ = _disk_steps(disk, _write_csv(tmp / "all.csv", header, rows), base_store, full_fs=False)
    res = child({"steps": steps + disk_steps}, tmp, timeout=150)
    res["after"] = snapshot(disk)  # the limit ended with the child: look from here
    for extra in ("m.sqlite-wal", "m.sqlite-shm"):
        res["after"].pop(extra, None)
    res["rows"] = len(MeasurementStore(disk / "m.sqlite"))
    return {"res": res, "disk": disk, "words": words}


def test_hang_and_memory_probes_end_in_one_line_in_bounded_time_and_memory(limited):
    res = limited["res"]
    for name in HANG_PROBES:
        assert_refused(res[name], CONFIG_FILES[name][1], limit_s=5)
        assert res[name]["rss_growth_mb"] < 300, (name, res[name]["rss_growth_mb"])
    assert_refused(res["cyclic_tree"], "cycle", limit_s=5)


def _can_drop_privileges() -> bool:
    return os.geteuid() == 0 and hasattr(os, "setuid")


def test_permission_denied_and_read_only_folders_are_one_line_and_leave_nothing(capsys):
    """As another user (the tests run as root here, and root ignores permission bits), or as this
    user when it is not root: folders it may not write, files it may not read."""
    base = Path(tempfile.mkdtemp(prefix="nas-hostile-", dir="/tmp"))
    try:
        base.chmod(0o755)
        ro = base / "ro"
        ro.mkdir()
        header, rows = _shipped_rows(3)
        good = _write_csv(base / "good.csv", header, rows)
        good.chmod(0o644)
        secret = base / "secret.json"
        secret.write_text(PRESETS["edgevit_xxs"].to_json())
        store_dir = base / "locked"
        store_dir.mkdir()
        assert main(["farm", "import", str(good), "--store", str(store_dir / "m.sqlite")]) == 0
        capsys.readouterr()
        pub = base / "pub"  # a store the other user may write (an export only reads it, but opens it read-write)
        pub.mkdir()
        shutil.copy(store_dir / "m.sqlite", pub / "m.sqlite")
        pub.chmod(0o777)
        (pub / "m.sqlite").chmod(0o666)
        for p in (ro, store_dir):
            p.chmod(0o555)
        (store_dir / "m.sqlite").chmod(0o444)
        secret.chmod(0o000)
        warm = base / "warm"  # the same commands once as this user first: Python's own files may be unreadable
        steps: list[dict] = [  # to the other user (here under /root), so every lazy import happens now
            {"do": "nas", "name": "warm_sample", "argv": ["space", "sample", "-n", "1", "--out", str(warm)]},
            {"do": "nas", "name": "warm_export", "argv": ["farm", "export", str(warm / "o.csv"), "--store",
                                                          str(store_dir / "m.sqlite")]},
            {"do": "nas", "name": "warm_import", "argv": ["farm", "import", str(good), "--store", str(warm / "m.sqlite")]},
            {"do": "nas", "name": "warm_validate", "argv": ["space", "validate", "edgevit_xxs"]},
            {"do": "snapshot", "name": "before", "dir": str(base)},
        ]
        if _can_drop_privileges():
            steps.append({"do": "drop_privileges", "uid": 65534})
        elif os.geteuid() == 0:
            pytest.skip("running as root without setuid: permission bits cannot be exercised")
        probes = {
            "sample_into_ro": (["space", "sample", "-n", "2", "--out", str(ro / "s")], "permission denied"),
            "export_into_ro": (["farm", "export", str(ro / "out.csv"), "--store", str(pub / "m.sqlite")],
                               "permission denied"),
            "unreadable_config": (["space", "validate", str(secret)], "Permission denied"),
            "store_in_ro_folder": (["farm", "import", str(good), "--store", str(ro / "m.sqlite")], "database"),
            "read_only_store": (["farm", "import", str(good), "--store", str(store_dir / "m.sqlite")], "database"),
        }
        steps += [{"do": "nas", "name": k, "argv": argv} for k, (argv, _) in probes.items()]
        res = child({"steps": steps}, base, timeout=120)
        assert all(res[k]["rc"] == 0 for k in res if k.startswith("warm_")), res
        for name, (_, words) in probes.items():
            assert_refused(res[name], words, rc=None)
        for p in (ro, store_dir, pub):
            p.chmod(0o755)
        secret.chmod(0o644)
        (store_dir / "m.sqlite").chmod(0o644)
        assert snapshot(base) == res["before"]  # no temporary file, no half-made store, nothing written
    finally:
        for p in base.rglob("*"):
            with_mode = 0o755 if p.is_dir() else 0o644
            p.chmod(with_mode)
        shutil.rmtree(base)


def _private_tmpfs(folder: Path) -> list[str] | None:
    """A wrapper that runs the child with a 2 MB tmpfs on ``folder`` in a mount namespace of its own
    (nothing to clean up, nothing visible outside), or None where that is not allowed."""
    unshare = shutil.which("unshare")
    if not unshare or os.geteuid() != 0:
        return None
    probe = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs -o size=2m tmpfs '{folder}'"], capture_output=True)
    if probe.returncode != 0:
        return None
    return [unshare, "--mount", "--propagation", "private", "sh", "-c",
            f"mount -t tmpfs -o size=2m tmpfs '{folder}' && exec \"$0\" \"$@\""]


def _check_disk_probe(res: dict, words: dict, disk: Path) -> None:
    err = assert_refused(res["import"], words["import"], "run the import again: nothing of the failed one was stored",
                         rc=1)
    assert str(disk / "m.sqlite") in err
    assert_refused(res["write"], words["write"], rc=1)
    assert res["rows"] == 25  # the transaction was rolled back whole
    before, after = res["before"], res["after"]
    assert after["m.sqlite"] == before["m.sqlite"]
    assert not any(k.endswith(".tmp") or k == "out.csv" for k in after), after  # no temporary or torn file
    assert set(after) - set(before) <= {f"s/{c.arch_id}.json" for c in _space_sample(400)}


def test_full_disk_is_one_line_with_a_resume_hint_and_the_store_unchanged(tmp_path, base_store):
    """A real full file system: a private 2 MB tmpfs (ENOSPC, SQLite's "database or disk is full")."""
    disk = tmp_path / "disk"
    disk.mkdir()
    wrap = _private_tmpfs(disk)
    if wrap is None:
        pytest.skip("a private tmpfs needs root and unshare(1); the file-size limit test covers the same path")
    header, rows = _shipped_rows(300)
    steps, words, _ = _disk_steps(disk, _write_csv(tmp_path / "all.csv", header, rows), base_store, full_fs=True)
    steps += [{"do": "unfill", "dir": str(disk)}, {"do": "snapshot", "name": "after", "dir": str(disk)},
              {"do": "rows", "name": "rows", "store": str(disk / "m.sqlite")}]  # seen from inside: the tmpfs ends
    _check_disk_probe(child({"steps": steps}, tmp_path, timeout=120, wrap=wrap), words, disk)


def test_a_file_size_limit_is_one_line_with_a_resume_hint_and_the_store_unchanged(limited):
    """The stand-in for a full disk that any user can set up (EFBIG; SQLite's "disk I/O error")."""
    _check_disk_probe(limited["res"], limited["words"], limited["disk"])


def _space_sample(n: int):
    from search_space import DEFAULT_SPACE

    return DEFAULT_SPACE.sample_random(n, seed=0)


# ------------------------------------------------------------------------------ the network
RAY_SCRIPT = """
import json, os, subprocess, sys
from pathlib import Path
from device_farm.ray_farm import init_ray

def tree(root):
    kids = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                kids.setdefault(int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += kids.get(p, [])
    return out

init_ray(None, local_devices=("host",), num_cpus=1)
import ray

@ray.remote
def pid():
    return os.getpid()

worker = ray.get(pid.remote())
pids = tree(os.getpid())
ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
mine = [line.split()[3] for line in ss.splitlines() if any(f"pid={p}," in line for p in pids)]
print(json.dumps({"listening": mine, "worker_seen": worker in pids, "processes": len(pids)}))
sys.stdout.flush()
ray.shutdown()
"""


def test_embedded_ray_listens_on_loopback_only_and_its_token_is_private(tmp_path):
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed: cannot list listening sockets")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    # the embedded Ray is the machine's own: an address in the environment (or the last `ray start`,
    # which ray.init() without an address would join) must not redirect it; nothing listens on port 1
    env["RAY_ADDRESS"] = "127.0.0.1:1"
    proc = subprocess.run([sys.executable, "-c", RAY_SCRIPT], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    listening = report["listening"]
    assert report["worker_seen"] and len(listening) >= 3, report  # the GCS, the raylet, a worker at least
    assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")) for a in listening), listening
    token = home / ".ray" / "auth_token"
    if token.exists():
        assert token.stat().st_mode & 0o777 == 0o600
        assert (home / ".ray").stat().st_mode & 0o777 == 0o700


def test_farm_serve_says_it_opens_the_machine_and_needs_bind_all(capsys):
    from device_farm.ray_farm import binding_note, serve_command

    assert_refused(nas(["farm", "serve", "--device", "host", "--address", "10.1.2.3:6379"], capsys),
                   "listen on all interfaces", "--bind-all", "--node-ip-address")
    cmd = serve_command("host", "10.1.2.3:6379", node_ip_address="10.1.2.4")
    assert cmd[cmd.index("--node-ip-address") + 1] == "10.1.2.4" and "--block" in cmd
    assert "all interfaces" in binding_note("10.1.2.3:6379") and "firewall" in binding_note("10.1.2.3:6379")
