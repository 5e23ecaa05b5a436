"""What every bench script shares: the machine/date header of its JSON and the one way it is written.

Each script in ``bench/`` prints a table and writes ``bench/results/<name>.json`` through
:func:`write_result`, which adds the date (UTC), the command line and :func:`machine` (CPU model,
cores, load average, Python and library versions), so every recorded figure says when and where it
was measured. Scripts run as ``python bench/<script>.py`` from the repository root; the root is put
on ``sys.path`` by :func:`setup` for scripts that import the project before it is installed.
"""
from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

__all__ = ["ROOT", "RESULTS", "setup", "machine", "now", "write_result"]


def setup() -> None:
    """Make the repository importable when a script runs from a plain checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine(**extra: Any) -> dict[str, Any]:
    """CPU model, core count, load average, Python and the versions of the libraries that set speed."""
    from importlib import metadata

    from device_farm.measure import cpu_id, cpu_model

    versions = {}
    for dist in ("torch", "onnxruntime", "numpy", "scikit-learn", "optuna", "ray"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu_model(), "cpu_id": cpu_id(), "cores": os.cpu_count(), "loadavg": load, "python": platform.python_version(),
            "versions": versions, **extra}


def write_result(name: str, payload: dict[str, Any], **machine_extra: Any) -> Path:
    """``bench/results/<name>.json`` with ``date``, ``command`` and ``machine`` first, written atomically."""
    import json

    from search_space.files import write_json

    doc = {"date": now(), "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
           "machine": machine(**machine_extra), **payload}
    path = write_json(RESULTS / f"{name}.json", json.loads(json.dumps(doc, default=float)), indent=1)
    print(f"wrote {path.relative_to(ROOT)}")
    return path
