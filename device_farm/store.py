"""The durable measurement store: SQLite in WAL mode, one row per measurement key.

Why SQLite: it is a real transactional database in one file, needs no server, and in WAL mode
readers never block the writer and concurrent writers queue on a lock (``busy_timeout``) instead of
failing, so several Ray workers on one machine can write at once without losing a row. Each call
opens its own connection, so a store object can be handed to threads and worker processes.

Writing the same measurement twice is idempotent (an upsert on the key); a ``failed`` or
``disturbed`` result never replaces a clean (``ok``) one. CSV export/import moves measurements
between machines with their provenance (``source``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from .measurement import KEY_FIELDS, STATUSES, Measurement

__all__ = ["DEFAULT_STORE", "MeasurementStore", "StoreError", "read_csv_measurements", "export_op_profiles",
           "import_op_profiles"]

DEFAULT_STORE = Path(os.environ.get("EDGEVIT_NAS_STORE", "runs/farm/measurements.sqlite"))

_COLUMNS = [f.name for f in fields(Measurement)]
_JSON_COLUMNS = ("env", "config")
_TYPES = {"threads": "INTEGER", "repeats": "INTEGER"}
_REAL = {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "ci95_rel", "candle_ms", "candle_ratio", "norm_ms", "energy_mj"}


class StoreError(ValueError):
    """Bad input to the store (e.g. an import file with missing columns); nothing was written."""


def _ddl() -> str:
    cols = []
    for c in _COLUMNS:
        typ = _TYPES.get(c, "REAL" if c in _REAL else "TEXT")
        null = " NOT NULL" if c in KEY_FIELDS or c in ("status", "source", "created_at") else ""
        cols.append(f"{c} {typ}{null}")
    return (
        "CREATE TABLE IF NOT EXISTS measurements (\n  rowid_ INTEGER PRIMARY KEY,\n  "
        + ",\n  ".join(cols)
        + f",\n  UNIQUE ({', '.join(KEY_FIELDS)})\n)"
    )


_REF_DDL = """
CREATE TABLE IF NOT EXISTS candle_references (
  device TEXT NOT NULL, runtime_version TEXT NOT NULL, threads INTEGER NOT NULL, candle TEXT NOT NULL,
  candle_ms REAL NOT NULL, created_at TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (device, runtime_version, threads, candle)
)"""

#: Facts about a device's measurements fixed once, like its reference candles: ``memory_ratio`` (the
#: memory probe's usual ratio) and ``cpu`` (the CPU the references were measured on).
_DEVICE_FACTS_DDL = """
CREATE TABLE IF NOT EXISTS device_facts (
  device TEXT NOT NULL, runtime_version TEXT NOT NULL, threads INTEGER NOT NULL, name TEXT NOT NULL,
  value TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (device, runtime_version, threads, name)
)"""

_ANCHOR_DDL = """
CREATE TABLE IF NOT EXISTS anchor_references (
  device TEXT NOT NULL, runtime_version TEXT NOT NULL, threads INTEGER NOT NULL, arch_id TEXT NOT NULL,
  norm_ms REAL NOT NULL, created_at TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (device, runtime_version, threads, arch_id)
);
CREATE TABLE IF NOT EXISTS anchor_checks (
  device TEXT NOT NULL, runtime_version TEXT NOT NULL, threads INTEGER NOT NULL, time REAL NOT NULL,
  k REAL NOT NULL, check_json TEXT NOT NULL
)"""

_OPS_DDL = """
CREATE TABLE IF NOT EXISTS op_profiles (
  arch_id TEXT NOT NULL, device TEXT NOT NULL, runtime_version TEXT NOT NULL, threads INTEGER NOT NULL,
  node TEXT NOT NULL, op_type TEXT NOT NULL, median_us REAL NOT NULL, runs INTEGER NOT NULL,
  PRIMARY KEY (arch_id, device, runtime_version, threads, node)
)"""


class MeasurementStore:
    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, timeout_s: float = 60.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_ddl())
            have = {r[1] for r in con.execute("PRAGMA table_info(measurements)")}
            for c in _COLUMNS:  # a store written by an older version gains the new columns, empty
                if c not in have:
                    con.execute(f"ALTER TABLE measurements ADD COLUMN {c} {_TYPES.get(c, 'REAL' if c in _REAL else 'TEXT')}")
            con.execute(_OPS_DDL)
            con.execute(_REF_DDL)
            con.execute(_DEVICE_FACTS_DDL)
            con.executescript(_ANCHOR_DDL)
            con.execute("CREATE INDEX IF NOT EXISTS by_device ON measurements (device, status)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout_s)
        con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        con.execute("PRAGMA synchronous=NORMAL")  # durable at each commit under WAL except on power loss
        con.row_factory = sqlite3.Row
        return con

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _row(m: Measurement) -> list[Any]:
        d = m.to_dict()
        return [json.dumps(d[c], sort_keys=True) if c in _JSON_COLUMNS and d[c] is not None else d[c] for c in _COLUMNS]

    def put(self, m: Measurement) -> bool:
        """Insert or replace ``m`` on its key; returns False when a clean row was kept instead."""
        return self.put_many([m]) == 1

    def put_many(self, ms: Iterable[Measurement]) -> int:
        """Write all of ``ms`` in one transaction; returns how many rows were written."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS if c not in KEY_FIELDS)
        sql = (
            f"INSERT INTO measurements ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(KEY_FIELDS)}) DO UPDATE SET {updates} "
            "WHERE measurements.status != 'ok' OR excluded.status = 'ok'"
        )
        written = 0
        with closing(self._connect()) as con, con:
            for m in ms:
                written += con.execute(sql, self._row(m)).rowcount
        return written

    def put_op_profile(self, m: Measurement, ops: list[dict[str, Any]]) -> None:
        rows = [(m.arch_id, m.device, m.runtime_version, m.threads, o["node"], o["op_type"], o["median_us"], o["runs"])
                for o in ops]
        with closing(self._connect()) as con, con:
            con.executemany("INSERT OR REPLACE INTO op_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _from_row(row: sqlite3.Row) -> Measurement:
        d = {c: row[c] for c in _COLUMNS}
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c]) if d[c] else ({} if c == "env" else None)
        return Measurement.from_dict(d)

    def query(self, device: str | None = None, status: str | None = None, arch_id: str | None = None,
              **key: Any) -> list[Measurement]:
        where, args = [], []
        for col, val in (("device", device), ("status", status), ("arch_id", arch_id), *key.items()):
            if val is not None:
                if col not in _COLUMNS:
                    raise StoreError(f"{col}: not a measurement field; allowed: {', '.join(_COLUMNS)}")
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid_"
        with closing(self._connect()) as con:
            return [self._from_row(r) for r in con.execute(sql, args)]

    def arch_ids(self, device: str, statuses: Iterable[str] = ("ok", "disturbed", "failed")) -> set[str]:
        statuses = tuple(statuses)
        sql = f"SELECT arch_id FROM measurements WHERE device = ? AND status IN ({', '.join('?' for _ in statuses)})"
        with closing(self._connect()) as con:
            return {r[0] for r in con.execute(sql, (device, *statuses))}

    def counts(self) -> dict[str, dict[str, int]]:
        """``{device: {status: rows}}``."""
        out: dict[str, dict[str, int]] = {}
        with closing(self._connect()) as con:
            for dev, st, n in con.execute("SELECT device, status, COUNT(*) FROM measurements GROUP BY device, status"):
                out.setdefault(dev, {})[st] = n
        return out

    def candle_references(self, device: str, runtime_version: str, threads: int,
                          propose: dict[str, float] | None = None) -> dict[str, float]:
        """The device's fixed reference candles (name -> ms): normalised latencies are candle ratios times them.

        Set once, all candles together, by the first call that ``propose``s them (the first clean
        interleaved measurement of the device in this store, whose candles were timed in the same
        session), and never changed: every ``norm_ms`` of the device here is in the same unit.
        """
        with closing(self._connect()) as con, con:
            have = con.execute("SELECT COUNT(*) FROM candle_references WHERE device = ? AND runtime_version = ? "
                               "AND threads = ?", (device, runtime_version, threads)).fetchone()[0]
            if propose and not have:
                con.executemany("INSERT INTO candle_references (device, runtime_version, threads, candle, candle_ms) "
                                "VALUES (?, ?, ?, ?, ?)",
                                [(device, runtime_version, threads, c, float(v)) for c, v in propose.items()])
            rows = con.execute("SELECT candle, candle_ms FROM candle_references WHERE device = ? AND "
                               "runtime_version = ? AND threads = ?", (device, runtime_version, threads)).fetchall()
        return {r[0]: float(r[1]) for r in rows}

    def device_fact(self, device: str, runtime_version: str, threads: int, name: str,
                    propose: str | None = None) -> str | None:
        """A fact about the device's measurements in this store (``name`` -> text), or None: set once, by
        the first call that ``propose``s it, and never changed, like the reference candles."""
        with closing(self._connect()) as con, con:
            if propose:
                con.execute("INSERT OR IGNORE INTO device_facts (device, runtime_version, threads, name, value) "
                            "VALUES (?, ?, ?, ?, ?)", (device, runtime_version, threads, name, propose))
            row = con.execute("SELECT value FROM device_facts WHERE device = ? AND runtime_version = ? AND "
                              "threads = ? AND name = ?", (device, runtime_version, threads, name)).fetchone()
        return row[0] if row else None

    def memory_reference(self, device: str, runtime_version: str, threads: int,
                         propose: float | None = None) -> float | None:
        """The device's usual memory-probe ratio (a large copy's time over the base candle's), or None.

        Fixed by the first clean measurement that timed the probe: a session whose ratio lies well above
        it ran beside a neighbour on the memory system (:class:`device_farm.measure.MeasureProtocol`).
        """
        v = self.device_fact(device, runtime_version, threads, "memory_ratio",
                             repr(float(propose)) if propose is not None and propose > 0 else None)
        return float(v) if v is not None else None

    def reference_cpu(self, device: str, runtime_version: str, threads: int, propose: str | None = None) -> str | None:
        """The CPU the device's references were measured on (:func:`device_farm.measure.cpu_id`), or None.

        Fixed by the device's first clean local measurement. A device id names one machine; a store carried
        to another machine (or a cloud machine that came back on another CPU) would otherwise normalise
        that machine's timings with the first one's references, one unit for two devices
        (:meth:`device_farm.measure.Farm.check_machine`)."""
        return self.device_fact(device, runtime_version, threads, "cpu", propose)

    def anchor_references(self, device: str, runtime_version: str, threads: int) -> dict[str, float]:
        """The device's anchors' reference ``norm_ms`` (arch_id -> ms), fixed at its first anchor check."""
        with closing(self._connect()) as con:
            rows = con.execute("SELECT arch_id, norm_ms FROM anchor_references WHERE device = ? AND runtime_version = ? "
                               "AND threads = ?", (device, runtime_version, threads)).fetchall()
        return {r[0]: float(r[1]) for r in rows}

    def set_anchor_references(self, device: str, runtime_version: str, threads: int, refs: dict[str, float]) -> None:
        with closing(self._connect()) as con, con:
            con.executemany("INSERT OR IGNORE INTO anchor_references (device, runtime_version, threads, arch_id, norm_ms) "
                            "VALUES (?, ?, ?, ?, ?)", [(device, runtime_version, threads, a, float(v)) for a, v in refs.items()])

    def put_anchor_check(self, device: str, runtime_version: str, threads: int, check: dict[str, Any]) -> None:
        with closing(self._connect()) as con, con:
            con.execute("INSERT INTO anchor_checks VALUES (?, ?, ?, ?, ?, ?)",
                        (device, runtime_version, threads, float(check["time"]), float(check["k"]), json.dumps(check)))

    def last_anchor_check(self, device: str, runtime_version: str, threads: int) -> dict[str, Any] | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT check_json FROM anchor_checks WHERE device = ? AND runtime_version = ? AND "
                              "threads = ? ORDER BY time DESC LIMIT 1", (device, runtime_version, threads)).fetchone()
        return json.loads(row[0]) if row else None

    def recent_candles(self, device: str, threads: int, runtime_version: str, n: int = 20) -> list[float]:
        """Candle latencies of the last ``n`` clean measurements with the same setting: the usual band."""
        sql = ("SELECT candle_ms FROM measurements WHERE device = ? AND threads = ? AND runtime_version = ? "
               "AND status = 'ok' AND candle_ms IS NOT NULL ORDER BY rowid_ DESC LIMIT ?")
        with closing(self._connect()) as con:
            return [r[0] for r in con.execute(sql, (device, threads, runtime_version, n))]

    def op_profile(self, arch_id: str, device: str) -> list[dict[str, Any]]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM op_profiles WHERE arch_id = ? AND device = ? ORDER BY median_us DESC",
                               (arch_id, device))
            return [dict(r) for r in rows]

    def __iter__(self) -> Iterator[Measurement]:
        return iter(self.query())

    def __len__(self) -> int:
        with closing(self._connect()) as con:
            return con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    # ------------------------------------------------------------------ exchange
    def export_csv(self, path: str | os.PathLike, device: str | None = None) -> int:
        from search_space.files import atomic_write  # here, not at the top: the worker imports this module without torch

        rows = self.query(device=device)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=_COLUMNS)
        w.writeheader()
        for m in rows:
            d = m.to_dict()
            for c in _JSON_COLUMNS:
                d[c] = json.dumps(d[c], sort_keys=True) if d[c] is not None else ""
            w.writerow({k: "" if v is None else v for k, v in d.items()})
        atomic_write(path, buf.getvalue())
        return len(rows)

    def import_csv(self, path: str | os.PathLike, source: str | None = None) -> int:
        """Read a CSV written by :meth:`export_csv` or by another tool with the same columns.

        All or nothing: every row is validated as a measurement (:func:`_parse_csv_row`) before the
        first is written, and the rows are written in one transaction, so a refused or interrupted
        import leaves the store as it was. Required columns: the key fields and ``status``;
        ``median_ms`` on ``ok`` rows. ``source`` fills rows without provenance (default
        ``import:<file name>``). Every refusal is one :class:`StoreError` line naming the file, the
        line, the field and what is allowed.
        """
        return self.put_many(read_csv_measurements(path, source))


# ---------------------------------------------------------------------------------- import validation
#: Limits of an import file. A measurement row is about 2 kB (its environment and configuration JSON),
#: so these refuse only what no measurement tool writes.
MAX_IMPORT_BYTES = 64 * 1024 * 1024
MAX_FIELD_CHARS = 64 * 1024
_ARCH_ID = re.compile(r"[0-9a-f]{12}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+/@-]{0,127}")  # device, runtime, version, precision
_SHAPE = re.compile(r"[1-9][0-9]{0,5}(x[1-9][0-9]{0,5}){1,4}")
#: Latency-like fields must be > 0, spread-like ones >= 0; every one finite, except the relative CI,
#: which the protocol itself leaves infinite when fewer than 3 timings exist.
_POSITIVE = ("median_ms", "p10_ms", "p90_ms", "candle_ms", "candle_ratio", "norm_ms")
_NON_NEGATIVE = ("iqr_ms", "cv", "ci95_rel", "energy_mj")
_MAY_BE_INFINITE = ("ci95_rel",)
_INTS = {"threads": 4096, "repeats": 10_000_000}
_TEXT_LIMIT = 4096  # error messages, sources, sensors


def _short(v: str, limit: int = 40) -> str:
    return repr(v) if len(v) <= limit else repr(v[:limit]) + f"... ({len(v):,} characters)"


def read_csv_measurements(path: str | os.PathLike, source: str | None = None) -> list[Measurement]:
    """Every row of an import file as a validated :class:`Measurement`, or one :class:`StoreError`
    line; nothing is written (``nas farm import`` checks the file before it opens the store)."""
    path = Path(path)
    ms: list[Measurement] = []
    seen: dict[tuple, int] = {}
    for line, row in _read_csv(path):
        m = _parse_csv_row(path, line, row, source)
        if m.key() in seen:
            raise StoreError(f"{path}:{line}: the same measurement key as line {seen[m.key()]} "
                             f"({', '.join(KEY_FIELDS)}); a file holds each measurement once")
        seen[m.key()] = line
        ms.append(m)
    return ms


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of ``path`` with their line numbers, after the file-level checks: it exists, is a
    file, is within :data:`MAX_IMPORT_BYTES`, is UTF-8 text without NUL bytes, and its header names
    the required columns and only known ones, once each."""
    from search_space.files import FileFormatError, read_text  # here: the worker imports this module without torch

    try:
        text = read_text(path, MAX_IMPORT_BYTES, what="import file")
    except FileFormatError as e:
        raise StoreError(str(e)) from None
    text = text.removeprefix("\ufeff")  # a spreadsheet's byte-order mark
    nul = text.find("\0")
    if nul >= 0:
        raise StoreError(f"import file {path}: a NUL character at offset {nul}: a binary file, not CSV text")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise StoreError(f"import file {path}: empty; expected a header row with {', '.join((*KEY_FIELDS, 'status'))}")
        required = (*KEY_FIELDS, "status")
        missing = [c for c in required if c not in header]
        if missing:
            raise StoreError(f"{path}: missing column {_short(missing[0])}; required: {', '.join(required)}")
        unknown = [c for c in header if c not in _COLUMNS]
        if unknown:
            raise StoreError(f"{path}: unknown column {_short(unknown[0])}; allowed: {', '.join(_COLUMNS)}")
        twice = [c for c in header if header.count(c) > 1]
        if twice:
            raise StoreError(f"{path}: column {twice[0]!r} appears twice in the header")
        rows = []
        for fields_ in reader:
            line = reader.line_num
            if not fields_:
                continue  # a blank line
            if len(fields_) > len(header):
                raise StoreError(f"{path}:{line}: {len(fields_)} fields, more than the {len(header)} columns of the header")
            for c, v in zip(header, fields_):
                if len(v) > MAX_FIELD_CHARS:
                    raise StoreError(f"{path}:{line}: {c} is {len(v):,} characters, more than the "
                                     f"{MAX_FIELD_CHARS:,} allowed")
            rows.append((line, dict(zip(header, fields_))))
    except csv.Error as e:
        if "field larger than field limit" in str(e):
            raise StoreError(f"{path}:{reader.line_num}: a field longer than the {MAX_FIELD_CHARS:,} characters "
                             "allowed") from None
        raise StoreError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return rows


def _number(path: Path, line: int, c: str, v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise StoreError(f"{path}:{line}: {c}={_short(v)}: not a number") from None
    if not math.isfinite(x) and not (c in _MAY_BE_INFINITE and x > 0):
        raise StoreError(f"{path}:{line}: {c}={_short(v)}: must be a finite number")
    if c in _POSITIVE and not x > 0:
        raise StoreError(f"{path}:{line}: {c}={_short(v)}: must be > 0 (a time or a ratio of times)")
    if c in _NON_NEGATIVE and not x >= 0:
        raise StoreError(f"{path}:{line}: {c}={_short(v)}: must be >= 0")
    return x


def _integer(path: Path, line: int, c: str, v: str) -> int:
    hi = _INTS[c]
    try:
        x = float(v) if len(v) <= 20 else math.nan
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x.is_integer() and 1 <= x <= hi):
        raise StoreError(f"{path}:{line}: {c}={_short(v)}: must be an integer from 1 to {hi}")
    return int(x)


def _json_field(path: Path, line: int, c: str, v: str, finite: bool) -> Any:
    from search_space.files import FileFormatError, loads

    try:
        value = loads(v, c, finite=finite)
    except FileFormatError as e:
        raise StoreError(f"{path}:{line}: {e}") from None
    if not isinstance(value, dict):
        raise StoreError(f"{path}:{line}: {c} is a JSON {type(value).__name__}; must be a JSON object")
    return value


def _parse_csv_row(path: Path, line: int, row: dict[str, str], source: str | None) -> Measurement:
    """One CSV row as a :class:`Measurement`, validated as the farm would have produced it: key fields
    in their formats, a known status, numbers that are numbers (latencies positive and finite), and a
    configuration that is a valid architecture whose canonical id is the row's ``arch_id``."""
    from search_space.config import ConfigError, EdgeViTConfig

    d: dict[str, Any] = {}
    for c, v in row.items():
        v = (v or "").strip() if c not in ("error", "source") else (v or "")
        if v == "":
            d[c] = None
        elif c in _JSON_COLUMNS:
            d[c] = _json_field(path, line, c, v, finite=(c == "config"))
        elif c in _REAL:
            d[c] = _number(path, line, c, v)
        elif c in _INTS:
            d[c] = _integer(path, line, c, v)
        elif len(v) > _TEXT_LIMIT:
            raise StoreError(f"{path}:{line}: {c} is {len(v):,} characters, more than the {_TEXT_LIMIT:,} allowed")
        else:
            d[c] = v
    for c in KEY_FIELDS:
        if d.get(c) is None:
            raise StoreError(f"{path}:{line}: {c} is empty; every key field is required")
    if not _ARCH_ID.fullmatch(d["arch_id"]):
        raise StoreError(f"{path}:{line}: arch_id={_short(d['arch_id'])}: must be 12 lowercase hex digits "
                         "(an architecture id, as 'nas space validate' prints)")
    for c in ("device", "runtime", "runtime_version", "precision"):
        if not _TOKEN.fullmatch(d[c]):
            raise StoreError(f"{path}:{line}: {c}={_short(d[c])}: must be a name of letters, digits and _.:+/@- "
                             "(at most 128 characters)")
    if not _SHAPE.fullmatch(d["input_shape"]):
        raise StoreError(f"{path}:{line}: input_shape={_short(d['input_shape'])}: must be sizes joined by x, "
                         "such as 1x3x224x224")
    if d["status"] not in STATUSES:
        raise StoreError(f"{path}:{line}: status={_short(d['status'])}: allowed: {', '.join(STATUSES)}")
    if d["status"] == "ok" and d.get("median_ms") is None:
        raise StoreError(f"{path}:{line}: median_ms is empty on an ok row")
    if d.get("config") is not None:
        try:
            cfg = EdgeViTConfig.from_dict(d["config"])
        except ConfigError as e:
            raise StoreError(f"{path}:{line}: config: {e}") from None
        if cfg.arch_id != d["arch_id"]:
            raise StoreError(f"{path}:{line}: arch_id={d['arch_id']!r} does not match its config, whose id is "
                             f"{cfg.arch_id}")
        side = d["input_shape"].split("x")[-2:]
        if side != [str(cfg.resolution)] * 2:
            raise StoreError(f"{path}:{line}: input_shape={d['input_shape']!r} does not match the config's "
                             f"resolution {cfg.resolution}")
    if d.get("created_at"):
        try:
            datetime.fromisoformat(d["created_at"])
        except ValueError:
            raise StoreError(f"{path}:{line}: created_at={_short(d['created_at'])}: must be an ISO 8601 time") from None
    else:
        d.pop("created_at", None)
    d["source"] = d.get("source") or source or f"import:{path.name}"
    d["env"] = d.get("env") or {}
    try:
        return Measurement.from_dict(d)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{path}:{line}: {e}") from None


# ---------------------------------------------------------------------------------------- operator profiles
_OP_COLUMNS = ("arch_id", "device", "runtime_version", "threads", "node", "op_type", "median_us", "runs")


def export_op_profiles(store: MeasurementStore, path: str | os.PathLike, device: str | None = None) -> int:
    """Write the store's per-operator profiles as CSV (gzip-compressed when ``path`` ends in ``.gz``)."""
    import gzip

    from search_space.files import atomic_write  # here, not at the top: the worker imports this module without torch

    sql = "SELECT * FROM op_profiles" + (" WHERE device = ?" if device else "") + " ORDER BY arch_id, node"
    with closing(store._connect()) as con:
        rows = con.execute(sql, (device,) if device else ()).fetchall()
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(_OP_COLUMNS)
    for r in rows:
        w.writerow([r[c] for c in _OP_COLUMNS])
    data = buf.getvalue().encode()
    atomic_write(path, gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)
    return len(rows)


def import_op_profiles(store: MeasurementStore, path: str | os.PathLike) -> int:
    """Read per-operator profiles written by :func:`export_op_profiles`; all rows or none."""
    return put_op_profile_rows(store, read_op_profiles(path))


def put_op_profile_rows(store: MeasurementStore, rows: list[tuple]) -> int:
    with closing(store._connect()) as con, con:
        con.executemany("INSERT OR REPLACE INTO op_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def read_op_profiles(path: str | os.PathLike) -> list[tuple]:
    """The rows of an operator-profile CSV, checked whole before anything is written."""
    import gzip

    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
    if tuple(reader.fieldnames or ()) != _OP_COLUMNS:
        raise StoreError(f"{path}: expected the columns {', '.join(_OP_COLUMNS)}")
    rows = []
    for i, r in enumerate(reader, 2):
        try:
            t = float(r["median_us"])
            threads, runs = int(r["threads"]), int(r["runs"])
        except ValueError:
            raise StoreError(f"{path}:{i}: median_us, threads and runs must be numbers") from None
        if not (t >= 0 and t < 1e9) or threads < 1 or runs < 0:
            raise StoreError(f"{path}:{i}: median_us must be a finite time >= 0, threads >= 1, runs >= 0")
        rows.append((r["arch_id"], r["device"], r["runtime_version"], threads, r["node"], r["op_type"], t, runs))
    return rows
