"""Detached server processes, recorded by PID and start time so `down` stops exactly them."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil
from pydantic import BaseModel


class ProcessRecord(BaseModel):
    pid: int
    # PIDs are reused; the start time tells our process from a stranger that got its PID.
    create_time: float
    argv: list[str]
    log: str


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start a server in its own session so it outlives the CLI and ignores the CLI's Ctrl-C."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            user=user,
            cwd=cwd,
        )
    return ProcessRecord(
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        argv=list(argv),
        log=str(log),
    )


def record_for(pid: int, log: Path) -> ProcessRecord:
    proc = psutil.Process(pid)
    return ProcessRecord(pid=pid, create_time=proc.create_time(), argv=proc.cmdline(), log=str(log))


def _process(record: ProcessRecord) -> psutil.Process | None:
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def is_alive(record: ProcessRecord) -> bool:
    return _process(record) is not None


def terminate(record: ProcessRecord, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Stop the process and every descendant; True when something was running."""
    proc = _process(record)
    if proc is None:
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for straggler in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            straggler.kill()
    psutil.wait_procs(alive, timeout=5)
    return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def log_tail(path: Path | str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# PostgreSQL refuses to run as root; as root we run it as this unprivileged system user.
POSTGRES_SYSTEM_USER = "aiops-postgres"


def running_as_root() -> bool:
    return os.geteuid() == 0


def ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise RuntimeError(f"could not create system user {name}: {result.stderr.strip()}")


def make_traversable(path: Path) -> None:
    """Let another user reach `path`: add o+x to every parent that lacks it."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)
