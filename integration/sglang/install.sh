#!/usr/bin/env bash
# Install SGLang for the CPU integration suite into the Python found first on PATH.
#
#   pip install --no-deps -r requirements/sglang-0.5.23.txt    # the session's lock: every dependency
#   bash integration/sglang/install.sh sglang==0.5.23
#
# (nox's sglang-<version> sessions run both.) The lock holds torch 2.14.1 + torchvision 0.29.1 (PyPI
# builds; they run on CPU, and sglang imports torchvision) and the pure-Python/CPU packages SGLang
# really imports, at that release's pins (dill and soundfile are imported but not declared
# upstream); `requirements/lock.py` says how it is made. This script then installs:
# 1. sglang itself with --no-deps: its declared dependency set pulls CUDA-only wheels
#    (flashinfer, sglang-kernel, deep-ep, ...) that cannot be imported on a CPU-only machine.
# 2. The `sgl_kernel` stand-in (integration/sglang/standin/sgl_kernel): sglang imports names from
#    it at start on the CPU path but never calls them here; every function of the stand-in raises
#    loudly and records its name. It is installed by a .pth file pointing at the stand-in folder,
#    so it is importable in every process of the engine (main, scheduler, detokenizer) without
#    PYTHONPATH, and the suite can check the record. It is test-only: never ship it.
# (The test-only third-party ttc plugin, integration/common/fixture_plugin, is installed by nox for
# every engine.)
set -euo pipefail

REQ="${1:-sglang==0.5.23}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"

echo "[install.sh] python: $(command -v "$PY") ($("$PY" -V 2>&1))"
"$PY" -m pip install -q --no-deps "$REQ"

# The real sgl_kernel / sglang-kernel wheels are CUDA-only; make sure none shadows the stand-in.
"$PY" -m pip uninstall -y -q sgl-kernel sglang-kernel >/dev/null 2>&1 || true

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$HERE/standin" > "$SITE/ttc_sgl_kernel_standin.pth"
echo "[install.sh] sgl_kernel stand-in: $SITE/ttc_sgl_kernel_standin.pth -> $HERE/standin"

SGLANG_USE_CPU_ENGINE=1 "$PY" - <<'PY'
import sgl_kernel, sglang, torch
assert getattr(sgl_kernel, "__ttc_standin__", False), f"sgl_kernel at {sgl_kernel.__file__} is not the stand-in"
print(f"[install.sh] ok: sglang {sglang.__version__}, torch {torch.__version__}, stand-in {sgl_kernel.__file__}")
PY
