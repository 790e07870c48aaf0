"""The engines' own routers in front of several replicas of a server (``vllm-router``,
``sglang-router``; Rust binaries in PyPI wheels, pinned by the noxfile's ``ROUTER`` and installed
into each engine's test session): start one on 127.0.0.1, and read each replica's count of finished
engine requests from its own metrics.

Nothing here routes: which replica serves a request is the router's choice (its default policy,
``cache_aware``, unless a test names another).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

from integration.common.server import ServerStartError, free_port, start_openai_server, stop_server

__all__ = ["finished_requests", "router_cmd", "router_running"]

ROUTER_START_TIMEOUT = 120

#: each engine's counter of finished engine requests (a search's rounds count one each)
_FINISHED = {"vllm": re.compile(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", re.M),
             "sglang": re.compile(r"^sglang:num_requests_total\{[^}]*\} ([0-9.e+]+)$", re.M)}


def router_cmd(engine: str, worker_urls: Sequence[str], port: int, metrics_port: int,
               policy: str | None = None) -> list[str]:
    """The router's command line: its console script in this interpreter's environment. Both
    routers export Prometheus metrics on a port of their own (29000 unless told: two routers, or a
    router still shutting down, would collide)."""
    bin_dir = Path(sys.executable).parent
    cmd = {"vllm": [str(bin_dir / "vllm-router")], "sglang": [str(bin_dir / "sglang-router"), "launch"]}[engine]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--prometheus-host", "127.0.0.1",
            "--prometheus-port", str(metrics_port), "--worker-urls", *worker_urls]
    if policy is not None:
        cmd += ["--policy", policy]
    return cmd


def _routes(base_url: str) -> bool:
    """The router lists a model: it has taken its workers in (``/health`` answers before that)."""
    try:
        with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5) as r:
            return bool(json.loads(r.read()).get("data"))
    except (OSError, ValueError, http.client.HTTPException):
        return False


@contextlib.contextmanager
def router_running(engine: str, worker_urls: Sequence[str], log_path: Path,
                   policy: str | None = None) -> Iterator[str]:
    """The engine's router over ``worker_urls`` (already serving), in its own process group (the
    console script's router outlives a signal to the script alone); yields its base URL once it
    routes, and stops the group afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_openai_server(router_cmd(engine, worker_urls, port, free_port(), policy), log_path, base,
                               ROUTER_START_TIMEOUT, new_session=True)
    try:
        deadline = time.time() + ROUTER_START_TIMEOUT
        while not _routes(base):
            if proc.poll() is not None or time.time() > deadline:
                raise ServerStartError(f"the router does not list a model:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield base
    finally:
        stop_server(proc, group=True)


def finished_requests(engine: str, base_url: str) -> int:
    """Engine requests the server at ``base_url`` has finished so far (its own Prometheus counter,
    summed over its labels)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = _FINISHED[engine].findall(text)
    if not values:
        raise AssertionError(f"{base_url}/metrics has no finished-request counter for {engine}")
    return int(sum(float(v) for v in values))
