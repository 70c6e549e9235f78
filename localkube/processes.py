"""Start, record and stop the local environment's child processes by PID.

Why this exists: ``fledge dev up`` starts processes that outlive the command,
and ``fledge dev down`` (another process, maybe much later) must stop exactly
those and nothing else.  Each started process is recorded with its PID and its
kernel start time, so a PID that was reused by an unrelated process is never
signalled.

What it must not do: signal any process it did not start, or leave a process
running after a failed start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Started:
    """A child process as recorded in the environment's state file."""

    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: identifies this process, not just its PID
    log: str
    ports: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Started:
        ports = data.get("ports") or ()
        assert isinstance(ports, list | tuple)
        return cls(
            name=str(data["name"]),
            pid=int(str(data["pid"])),
            start_ticks=int(str(data["start_ticks"])),
            log=str(data["log"]),
            ports=tuple(int(p) for p in ports),
        )


# Popen objects of children started by this process: kept so they are reaped through Popen
# (no zombie, no ResourceWarning) when stop() ends them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_ticks(pid: int) -> int | None:
    """The kernel start time of a PID, or None when no such process exists."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in field 2 may contain spaces; fields after it are plain.
    after_name = stat.rsplit(")", 1)[1].split()
    return int(after_name[19])


def is_running(proc: Started) -> bool:
    ticks = start_ticks(proc.pid)
    if ticks is None or ticks != proc.start_ticks:
        return False
    state = pathlib.Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def spawn(name: str, argv: Sequence[str], log_path: pathlib.Path, ports: Sequence[int] = (),
          env: dict[str, str] | None = None) -> tuple[Started, subprocess.Popen[bytes]]:
    """Start a process in its own session (so Ctrl-C in the shell does not reach it) with output to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
    _CHILDREN[popen.pid] = popen
    ticks = start_ticks(popen.pid)
    if ticks is None:
        raise RuntimeError(f"{name} exited at once; see {log_path}")
    return Started(name=name, pid=popen.pid, start_ticks=ticks, log=str(log_path), ports=tuple(ports)), popen


def stop(proc: Started, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a process that is gone or was replaced is left alone."""
    try:
        if not is_running(proc):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap(proc.pid)
            if not is_running(proc):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and is_running(proc):
            reap(proc.pid)
            time.sleep(0.05)
    finally:
        popen = _CHILDREN.pop(proc.pid, None)
        if popen is not None:
            # Our own child: collect its exit status (it is dead or dying by now).
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)


def reap(pid: int) -> None:
    """Collect a child's exit status so it does not linger as a zombie (no-op for non-children)."""
    popen = _CHILDREN.get(pid)
    if popen is not None:
        if popen.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(proc: Started, url: str, timeout: float, what: str, log_path: pathlib.Path,
                 tail: Callable[[], str] = lambda: "") -> None:
    """Poll ``url`` until it answers 200; RuntimeError naming ``what`` and its log when the process exits
    first or the deadline passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(proc):
            raise RuntimeError(f"{what} exited at start; see {log_path}:\n{tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not healthy after {timeout}s; see {log_path}")

