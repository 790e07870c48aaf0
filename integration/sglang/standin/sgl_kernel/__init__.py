"""Test-only stand-in for SGLang's CUDA-only ``sgl_kernel`` package.

SGLang 0.5.23 on CPU (``SGLANG_USE_CPU_ENGINE=1``) imports a handful of names from ``sgl_kernel``
at start (KV-cache copy helpers, speculative-tree helpers) that no CPU wheel on PyPI provides.
On the paths this suite exercises they are imported but never called. This module lets the
imports succeed and makes any *call* fail loudly:

- every attribute is a function that, when called, records its name (in :data:`CALLS` and, when
  ``TTC_SGL_KERNEL_STANDIN_LOG`` is set, by appending a line to that file, so calls made in the
  scheduler subprocess are visible to the test process) and raises ``NotImplementedError``;
- :data:`ACCESSED` records every name that was looked up (informational).

The integration suite asserts that the call log stays empty. Never install this outside tests.
"""

from __future__ import annotations

import os

__ttc_standin__ = True
__version__ = "0.0.0+ttc.standin"

ACCESSED: list[str] = []
CALLS: list[str] = []
LOG_ENV = "TTC_SGL_KERNEL_STANDIN_LOG"


class StandinCalled(NotImplementedError):
    """A function of the sgl_kernel stand-in was called: this code path needs the real kernels."""


def _record_call(name: str) -> None:
    CALLS.append(name)
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {name}\n")


def _make(name: str):
    def standin(*args, **kwargs):
        _record_call(name)
        raise StandinCalled(
            f"sgl_kernel.{name} was called, but sgl_kernel here is the ttc-plugins test stand-in "
            f"(integration/sglang/standin): this SGLang code path needs the real CUDA/CPU kernels"
        )

    standin.__name__ = standin.__qualname__ = name
    standin.__module__ = __name__
    return standin


def __getattr__(name: str):
    # Dunder/private lookups (``__path__``, ``__spec__`` probes, pickling) must behave like a
    # normal module's: absent.
    if name.startswith("_"):
        raise AttributeError(name)
    ACCESSED.append(name)
    fn = _make(name)
    globals()[name] = fn
    return fn
