"""The supervisor's runtime directory (`workers: N > 1`, gateway.workers): one per
supervisor under the temp dir, named by its pid, holding each worker's admin
socket and, under metrics/, the workers' multiprocess metrics files
(gateway.metrics_workers.share_values). The supervisor removes it when it exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_PREFIX = "webhook-gateway-"  # + the supervisor's pid


def new_runtime_dir() -> str:
    """A fresh runtime directory with its metrics/, after removing stale ones."""
    _remove_stale_runtime_dirs()
    path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    os.mkdir(metrics_dir(path))
    return path


def admin_socket(runtime_dir: str, index: int) -> str:
    return os.path.join(runtime_dir, f"worker-{index}.sock")


def metrics_dir(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, "metrics")


def _remove_stale_runtime_dirs() -> None:
    """Runtime directories of supervisors that died without cleaning up (kill -9):
    their pid is gone, or is ours (a container's PID 1 again, after a restart)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not path.is_dir():
            continue
        if int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # a live gateway's
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # another user's live process
        shutil.rmtree(path, ignore_errors=True)
