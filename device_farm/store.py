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
import os
import sqlite3
from contextlib import closing
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from .measurement import KEY_FIELDS, Measurement

__all__ = ["DEFAULT_STORE", "MeasurementStore", "StoreError", "export_op_profiles", "import_op_profiles"]

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

        Required: the key fields, ``status`` and ``median_ms`` (for ``ok`` rows). ``source`` fills
        rows without provenance (default ``import:<file name>``). Validated whole before writing.
        """
        path = Path(path)
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in (*KEY_FIELDS, "status") if c not in header]
            if missing:
                raise StoreError(f"{path}: missing column {missing[0]!r}; required: {', '.join((*KEY_FIELDS, 'status'))}")
            unknown = [c for c in header if c not in _COLUMNS]
            if unknown:
                raise StoreError(f"{path}: unknown column {unknown[0]!r}; allowed: {', '.join(_COLUMNS)}")
            ms = [self._parse_csv_row(path, i + 2, row, source) for i, row in enumerate(reader)]
        return self.put_many(ms)

    @staticmethod
    def _parse_csv_row(path: Path, line: int, row: dict[str, str], source: str | None) -> Measurement:
        d: dict[str, Any] = {}
        for c, v in row.items():
            if v == "" or v is None:
                d[c] = None
            elif c in _JSON_COLUMNS:
                d[c] = json.loads(v)
            elif c in _REAL:
                d[c] = float(v)
            elif c in _TYPES:
                d[c] = int(float(v))
            else:
                d[c] = v
        for c in KEY_FIELDS:
            if d.get(c) is None:
                raise StoreError(f"{path}:{line}: {c} is empty; every key field is required")
        if d["status"] == "ok" and d.get("median_ms") is None:
            raise StoreError(f"{path}:{line}: median_ms is empty on an ok row")
        d["source"] = d.get("source") or source or f"import:{path.name}"
        d["env"] = d.get("env") or {}
        if not d.get("created_at"):
            d.pop("created_at", None)
        try:
            return Measurement.from_dict(d)
        except ValueError as e:
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
    with closing(store._connect()) as con, con:
        con.executemany("INSERT OR REPLACE INTO op_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)
