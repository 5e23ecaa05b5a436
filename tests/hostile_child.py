"""A process of its own for the probes of ``test_hostile.py`` that change the process or may hang.

Why a separate process: a memory limit, a file-size limit, dropped privileges or a private full
disk cannot be undone inside the test process, and a probe that regresses into a hang or a 10 GB
allocation must be killed by a timeout instead of taking the test run with it.

``python tests/hostile_child.py SPEC.json`` runs the steps of SPEC in order and prints one JSON
object: for each ``nas`` step its exit status, stderr, seconds and peak-memory growth; for each
``snapshot`` step the files of a folder with their SHA-256. The steps:

- ``{"do": "nas", "name": N, "argv": [...]}``: ``nas.cli.main(argv)`` with stdout/stderr captured;
- ``{"do": "limit_memory", "extra_mb": M}``: address space capped at the current size + M MB;
- ``{"do": "limit_file_size", "bytes": B}``: no file may grow beyond B bytes (SIGXFSZ ignored);
- ``{"do": "drop_privileges", "uid": U}``: become that user (the permission probes run as root);
- ``{"do": "fill", "dir": D, "leave": B}`` / ``{"do": "unfill", "dir": D}``: a filler file that
  leaves B bytes free on D's file system, and its removal;
- ``{"do": "copy", "src": S, "dst": D}``; ``{"do": "snapshot", "name": N, "dir": D}``;
  ``{"do": "rows", "name": N, "store": S}``: the number of rows in a measurement store.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path


def snapshot(folder: str) -> dict[str, str]:
    root = Path(folder)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def run(spec: dict) -> dict:
    from nas.cli import main as nas
    # The limits apply to the commands, not to loading torch: the CLI imports torch, timm and
    # scikit-learn only when a command needs them, so they are loaded here, before any limit.
    import device_farm.measure  # noqa: F401
    import predictors.latency  # noqa: F401
    import search_space.model  # noqa: F401

    out: dict = {}
    for step in spec["steps"]:
        do = step["do"]
        if do == "nas":
            err, std = io.StringIO(), io.StringIO()
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                try:
                    rc = nas(step["argv"])
                except SystemExit as e:
                    rc = e.code
                except BaseException as e:  # reported, not raised: the test says which probe failed how
                    rc = f"raised {type(e).__name__}: {e}"
            out[step["name"]] = {"rc": rc, "err": err.getvalue(), "out": std.getvalue()[-2000:],
                                 "seconds": time.perf_counter() - t0,
                                 "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}
        elif do == "limit_memory":
            cap = _vm_size() + step["extra_mb"] * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        elif do == "limit_file_size":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (step["bytes"], step["bytes"]))
        elif do == "drop_privileges":
            os.setgroups([])
            os.setgid(step["uid"])
            os.setuid(step["uid"])
        elif do == "fill":
            st = os.statvfs(step["dir"])
            free = st.f_bavail * st.f_frsize
            with open(Path(step["dir"]) / "filler", "wb") as f:
                f.write(b"\0" * max(0, free - step["leave"]))
        elif do == "unfill":
            (Path(step["dir"]) / "filler").unlink()
        elif do == "copy":
            shutil.copy(step["src"], step["dst"])
        elif do == "snapshot":
            out[step["name"]] = snapshot(step["dir"])
        elif do == "rows":
            from device_farm import MeasurementStore

            out[step["name"]] = len(MeasurementStore(step["store"]))
        else:
            raise ValueError(f"step do={do!r}: unknown")
    return out


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
