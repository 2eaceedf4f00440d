"""Find the processes that belong to one local stack, to prove ``make stop`` left none behind."""

from __future__ import annotations

from pathlib import Path

import psutil


def stack_processes(local_dir: Path) -> list[psutil.Process]:
    """Live processes started for the stack in ``local_dir``: marked by their environment or command line."""
    marker = str(local_dir)
    me = psutil.Process()
    exempt = {me.pid} | {parent.pid for parent in me.parents()}
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid in exempt:
            continue
        try:
            if marker in " ".join(process.info["cmdline"] or []) or process.environ().get("VDI_LOCAL_DIR") == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_all(processes: list[psutil.Process], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after ``timeout_s``."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)
