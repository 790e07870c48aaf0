"""The sgl_kernel stand-in: it is what sglang imported, it fails loudly, and nothing called it.

Named ``zz`` so it runs after every engine test of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_sgl_kernel_is_the_stand_in():
    import sgl_kernel

    assert getattr(sgl_kernel, "__ttc_standin__", False), sgl_kernel.__file__


def test_stand_in_fails_loudly_and_records_the_call(tmp_path):
    log = tmp_path / "calls.log"
    code = (
        "import sgl_kernel\n"
        "try:\n    sgl_kernel.copy_all_layer_kv_cache_cpu(1, 2)\n"
        "except NotImplementedError as e:\n    print('RAISED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TTC_SGL_KERNEL_STANDIN_LOG": str(log)})
    assert "RAISED sgl_kernel.copy_all_layer_kv_cache_cpu was called" in out.stdout, out.stderr
    assert log.read_text().split()[1:] == ["copy_all_layer_kv_cache_cpu"]


def test_no_stand_in_function_was_called_by_any_engine_process(engine, run_dir):
    import sgl_kernel

    log = run_dir / "sgl-kernel-standin-calls.log"
    calls = log.read_text() if log.exists() else ""
    assert calls == "", f"sgl_kernel stand-in functions were called:\n{calls}"
    assert sgl_kernel.CALLS == []
