"""Engine output goes to stderr; stdout carries the command's result only (``ttc generate > file``).

The guard is exercised in a child process with real file descriptors, writing the ways engines do:
a logging config naming ``ext://sys.stdout`` (vLLM's default), a handler bound to stdout before the
engine started, ``print``, ``os.write(1, ...)``, C ``printf`` (buffered), a child process, a
warning."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import textwrap

import pytest

from ttc_plugins.commands.engine_env import prepare_engine_env
from ttc_plugins.commands.engine_output import engine_output_to_stderr

ENGINE_LIKE = textwrap.dedent("""
    import ctypes, logging, logging.config, os, subprocess, sys, warnings
    from ttc_plugins.commands.engine_output import engine_output_to_stderr

    early = logging.getLogger("early")
    early.addHandler(logging.StreamHandler(sys.stdout))
    early.propagate = False
    with engine_output_to_stderr():
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"h": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
            "loggers": {"engine": {"handlers": ["h"], "level": "INFO", "propagate": False}},
        })
        logging.getLogger("engine").warning("engine-log")
        early.warning("early-handler")
        print("engine-print")
        sys.__stdout__.write("unflushed-stdout-object\\n")
        os.write(1, b"fd-write\\n")
        ctypes.CDLL(None).printf(b"c-printf\\n")
        subprocess.run([sys.executable, "-c", "print('child-print')"], check=True)
        warnings.warn("engine-warning")
    logging.getLogger("engine").warning("late-log")
    print("RESULT")
""")


def test_everything_an_engine_writes_goes_to_stderr():
    proc = subprocess.run([sys.executable, "-c", ENGINE_LIKE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "RESULT\n", proc.stdout
    for marker in ("engine-log", "early-handler", "engine-print", "unflushed-stdout-object", "fd-write", "c-printf",
                   "child-print", "engine-warning", "late-log"):
        assert marker in proc.stderr, marker


def test_in_memory_streams_are_redirected_too():
    """CliRunner and notebooks give sys.stdout without a file descriptor."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with engine_output_to_stderr():
            print("engine")
        print("result")
    assert out.getvalue() == "result\n" and err.getvalue() == "engine\n"


@pytest.fixture
def environ():
    saved = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "hf"])
def test_engine_env_leaves_thread_counts_to_the_machine(environ, engine):
    environ.pop("OMP_NUM_THREADS", None)
    prepare_engine_env(engine)
    assert "OMP_NUM_THREADS" not in environ
    environ["OMP_NUM_THREADS"] = "8"
    prepare_engine_env(engine)
    assert environ["OMP_NUM_THREADS"] == "8"


def test_engine_env_sends_vllm_logs_to_stderr_unless_told_otherwise(environ):
    environ.pop("VLLM_LOGGING_STREAM", None)
    prepare_engine_env("vllm")
    assert environ["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"
    environ["VLLM_LOGGING_STREAM"] = "ext://sys.stdout"
    prepare_engine_env("vllm")
    assert environ["VLLM_LOGGING_STREAM"] == "ext://sys.stdout"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_vllm_logging_config_writes_to_stderr():
    code = ("from ttc_plugins.commands.engine_env import prepare_engine_env; prepare_engine_env('vllm')\n"
            "import vllm.logger, logging\n"
            "logging.getLogger('vllm.ttc_test').warning('vllm-warning')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_LOGGING")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "vllm-warning" not in proc.stdout and "vllm-warning" in proc.stderr
