"""Keep what an engine prints off the CLI's stdout, so ``ttc generate ... > answer.txt`` holds the
answer and nothing else.

Engines write to stdout from several layers: vLLM's logging config (``ext://sys.stdout`` unless
``VLLM_LOGGING_STREAM`` says otherwise), ``print`` calls, C/C++ code writing to file descriptor 1,
and child processes (SGLang's scheduler) that inherit it. :func:`engine_output_to_stderr` sends
all of them to stderr while an engine starts and runs: ``sys.stdout`` is swapped for ``sys.stderr``
(so a handler configured inside the block binds to stderr for good) and, when stdout is a real
file descriptor, descriptor 1 is pointed at descriptor 2 (children started inside keep it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import IO, Any, Iterator

__all__ = ["engine_output_to_stderr"]


def _fileno(stream: IO[Any]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: an in-memory stream
        return None


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers: printf output still buffered would reach descriptor 1 after it is
    restored."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to load (not a POSIX libc)
        pass


@contextlib.contextmanager
def engine_output_to_stderr() -> Iterator[None]:
    """Everything written to stdout inside the block goes to stderr (see the module docstring)."""
    stdout, stderr = sys.stdout, sys.stderr
    out_fd, err_fd = _fileno(stdout), _fileno(stderr)
    stdout.flush()
    saved_fd = None
    if out_fd is not None and err_fd is not None and out_fd != err_fd:
        saved_fd = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
    try:
        with contextlib.redirect_stdout(stderr):
            yield
    finally:
        # Whatever reached the original stdout object or C's buffers belongs to the block.
        for stream in (stdout, stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if saved_fd is not None:
            _flush_c_stdio()
            os.dup2(saved_fd, out_fd)
            os.close(saved_fd)
