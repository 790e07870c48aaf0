"""Start an OpenAI-compatible server as a child process, wait until it serves, and stop it (the
server fixtures of both integration suites and the HTTP benchmark).

The health check uses ``urllib`` rather than ``requests`` so that the benchmarks need nothing
beyond the engine's own dependencies.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["ServerStartError", "free_port", "settled_kv", "start_openai_server", "stop_server", "tree_rss",
           "wait_healthy"]

LOG_TAIL_CHARS = 6000


class ServerStartError(RuntimeError):
    """The server exited, or did not answer ``/health`` in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, 5xx while starting, half-written reply
        return False


def wait_healthy(proc: subprocess.Popen, base_url: str, log_path: Path, timeout: float,
                 *, since: float | None = None, dead_if: str | None = None) -> None:
    """Poll ``{base_url}/health`` once a second until it answers 200. Raises
    :class:`ServerStartError` with the tail of ``log_path`` when ``proc`` exits first, its log
    shows ``dead_if`` (a server whose main process outlives a failed child says so), or
    ``timeout`` seconds have passed since ``since`` (a ``time.time()``; default: now). Does not
    stop the process."""
    deadline = (time.time() if since is None else since) + timeout
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"server exited ({proc.returncode}):\n{_tail(log_path)}")
        if dead_if is not None and dead_if in Path(log_path).read_text(errors="replace"):
            raise ServerStartError(f"server failed ({dead_if!r}):\n{_tail(log_path)}")
        if _healthy(base_url):
            return
        if time.time() > deadline:
            raise ServerStartError(f"server not healthy in {timeout:.0f} s:\n{_tail(log_path)}")
        time.sleep(1)


def start_openai_server(cmd: Sequence[str], log_path: Path, base_url: str, timeout: float, *,
                        env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                        new_session: bool = False) -> subprocess.Popen:
    """Start ``cmd`` (stdout and stderr to ``log_path``) and return it once ``{base_url}/health``
    answers 200. On failure the process is stopped and :class:`ServerStartError` raised (see
    :func:`wait_healthy`). ``new_session``: its own process group (stop it with ``group=True``)."""
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env), cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=new_session)
    try:
        wait_healthy(proc, base_url, log_path, timeout)
    except BaseException:
        stop_server(proc, group=new_session)
        raise
    return proc


def stop_server(proc: subprocess.Popen, *, timeout: float = 30, group: bool = False) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds. ``group``: signal its
    whole process group (a child started in a new session, whose own children share the group:
    SGLang's scheduler and detokenizer)."""
    if proc.poll() is not None:
        return

    def send(sig: int) -> None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    try:
        send(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:  # the group went away between poll() and the signal
        pass


def _tail(log_path: Path) -> str:
    return Path(log_path).read_text(errors="replace")[-LOG_TAIL_CHARS:]


def tree_rss(pid: int) -> dict[str, int]:
    """Resident memory (bytes) of process ``pid`` and each of its descendants (a server's API
    process, engine core and workers), by ``"<name> <pid>"``."""
    import psutil

    root = psutil.Process(pid)
    rss = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss[f"{proc.name()} {proc.pid}"] = proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return rss


def settled_kv(in_use, idle: float, deadline_s: float = 60.0) -> tuple[float, float]:
    """Poll ``in_use()`` (an engine's KV gauge) until it is back at ``idle`` (what the engine was
    still finishing, e.g. an abandoned stream or search, has ended) or ``deadline_s`` passed:
    (KV in use then, seconds it took)."""
    start = time.time()
    used = in_use()
    while used > idle and time.time() - start < deadline_s:
        time.sleep(0.25)
        used = in_use()
    return used, time.time() - start
