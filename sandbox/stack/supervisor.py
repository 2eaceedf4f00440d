"""supervisord for the local stack: one config file, one control socket, whole process groups stopped."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.stack.errors import StackError
from sandbox.stack.settings import REPO_ROOT, StackSettings

# AF_UNIX paths are limited to 108 bytes; a deep checkout falls back to a short path in the temp dir.
_MAX_SOCKET_PATH = 100
# A program that exits unexpectedly is started again; these tries (1 s more backoff each) let it outlast a short
# outage of what it needs at start, e.g. the scheduler restarted while PostgreSQL is still restarting.
START_RETRIES = 3


@dataclass
class Program:
    """One long-running process of the stack."""

    name: str
    command: list[str]
    group: str | None = None
    user: str | None = None
    with_runtime_env: bool = True
    stop_signal: str = "TERM"
    # postgres stops its own children; signalling its backends directly is unsafe.
    stop_as_group: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    # GET this URL until it answers 2xx to call the program healthy (None: running is enough).
    health_url: str | None = None
    # The key of ``StackSettings.ports`` this program listens on, checked free before start.
    port_name: str | None = None
    # supervisord stops higher priorities first: PostgreSQL (lowest) outlives everything that uses it.
    priority: int = 500

    @property
    def qualified_name(self) -> str:
        return f"{self.group}:{self.name}" if self.group else self.name


class Supervisor:
    """Renders ``supervisord.conf`` and drives supervisord through ``supervisorctl``."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.config_path = settings.run_dir / "supervisord.conf"
        self.pid_path = settings.run_dir / "supervisord.pid"

    @property
    def socket_path(self) -> Path:
        path = self.settings.run_dir / "supervisor.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"vdi-supervisor-{digest}.sock"
        return path

    def pid(self) -> int | None:
        """supervisord's pid when it is running, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            import psutil

            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE or "supervisord" not in " ".join(process.cmdline()):
                return None
        except Exception:  # gone, or not ours
            return None
        return pid

    def write_config(self, programs: list[Program]) -> None:
        s = self.settings
        lines = [
            "[unix_http_server]", f"file={self.socket_path}", "chmod=0700", "",
            "[supervisord]", f"logfile={s.logs_dir / 'supervisord.log'}", f"pidfile={self.pid_path}",
            f"childlogdir={s.logs_dir}", f"directory={REPO_ROOT}", "logfile_maxbytes=10MB", "logfile_backups=2",
            "user=root" if _is_root() else "", "",
            "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{self.socket_path}", "",
        ]
        groups: dict[str, list[str]] = {}
        for program in programs:
            command = program.command
            if program.with_runtime_env:
                command = [str(s.python), "-m", "sandbox.stack.exec", str(s.runtime_env_path), *command]
            lines += [
                f"[program:{program.name}]",
                "command=" + " ".join(shlex.quote(part) for part in command).replace("%", "%%"),
                f"directory={REPO_ROOT}",
                f"priority={program.priority}",
                "autostart=false", "autorestart=unexpected", "startsecs=2", f"startretries={START_RETRIES}",
                f"stopsignal={program.stop_signal}", "stopwaitsecs=30",
                f"stopasgroup={str(program.stop_as_group).lower()}", "killasgroup=true",
                f"stdout_logfile={s.logs_dir / (program.name + '.log')}", "redirect_stderr=true",
                "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=2",
            ]
            if program.user:
                lines.append(f"user={program.user}")
            lines += [f"{key}={value}" for key, value in program.extra.items()] + [""]
            if program.group:
                groups.setdefault(program.group, []).append(program.name)
        for group, names in groups.items():
            lines += [f"[group:{group}]", "programs=" + ",".join(names), ""]
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines))

    def start_daemon(self, deadline_s: float = 20) -> None:
        result = subprocess.run([str(self.settings.bin_dir / "supervisord"), "-c", str(self.config_path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"supervisord did not start: {(result.stderr or result.stdout).strip()}")
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.ctl("pid", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise StackError(f"supervisord did not answer within {deadline_s:.0f}s; see {self.settings.logs_dir}/supervisord.log")

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.settings.bin_dir / "supervisorctl"), "-c", str(self.config_path), *args],
                                capture_output=True, text=True)
        if check and (result.returncode != 0 or "ERROR" in result.stdout):
            raise StackError(f"supervisorctl {' '.join(args)}: {result.stdout.strip() or result.stderr.strip()}")
        return result

    def start(self, program: Program) -> None:
        try:
            self.ctl("start", program.qualified_name)
        except StackError as error:
            raise StackError(f"{program.name} did not start ({error}); see {self.log_path(program)}") from None

    def is_running(self, program: Program) -> bool:
        result = self.ctl("status", program.qualified_name, check=False)
        return "RUNNING" in result.stdout or "STARTING" in result.stdout

    def log_path(self, program: Program) -> Path:
        return self.settings.logs_dir / f"{program.name}.log"

    def shutdown(self, deadline_s: float = 90) -> bool:
        """Stop every program and supervisord itself; True when it was running."""
        pid = self.pid()
        if pid is None:
            return False
        self.ctl("shutdown", check=False)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            raise StackError(f"supervisord (pid {pid}) did not stop within {deadline_s:.0f}s")
        return True


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
