#!/usr/bin/env bash
# Install SGLang for the CPU integration suite into the Python found first on PATH.
#
#   bash integration/sglang/install.sh sglang==0.5.23
#
# 1. torch 2.14.1 + torchvision 0.29.1 (PyPI builds; they run on CPU, and sglang imports torchvision).
# 2. sglang itself with --no-deps: its declared dependency set pulls CUDA-only wheels
#    (flashinfer, sglang-kernel, deep-ep, ...) that cannot be imported on a CPU-only machine.
# 3. The pure-Python/CPU dependencies sglang 0.5.23 really imports (dill and soundfile are
#    imported but not declared upstream).
# 4. The `sgl_kernel` stand-in (integration/sglang/standin/sgl_kernel): sglang imports names from
#    it at start on the CPU path but never calls them here; every function of the stand-in raises
#    loudly and records its name. It is installed by a .pth file pointing at the stand-in folder,
#    so it is importable in every process of the engine (main, scheduler, detokenizer) without
#    PYTHONPATH, and the suite can check the record. It is test-only: never ship it.
# 5. A test-only ttc plugin (integration/sglang/fixture_plugin) for the ttc_accept_token test.
set -euo pipefail

REQ="${1:-sglang==0.5.23}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"

echo "[install.sh] python: $(command -v "$PY") ($("$PY" -V 2>&1))"
"$PY" -m pip install -q 'torch==2.14.1' 'torchvision==0.29.1'
"$PY" -m pip install -q --no-deps "$REQ"
"$PY" -m pip install -q \
  aiohttp fastapi 'uvicorn>=0.51' uvloop orjson 'pyzmq>=25.1.2' psutil pydantic requests tqdm \
  'transformers==5.19.0' 'tokenizers==0.23.2' numpy scipy setproctitle msgspec pybase64 python-multipart \
  'prometheus-client>=0.20.0' 'xgrammar==0.2.7' partial_json_parser interegular einops pillow 'openai==2.8.0' \
  'openai-harmony==0.0.4' 'sentencepiece==0.2.1' tiktoken 'blobfile==3.0.0' 'compressed-tensors==0.18.0' gguf \
  'llguidance>=1.7.6,<2' xxhash zstandard watchfiles IPython packaging distro easydict regex 'anthropic>=0.20.0' \
  'python-dateutil<3' 'mistral_common>=1.11.5' 'apache-tvm-ffi==0.1.11' nvidia-ml-py ninja build \
  dill 'soundfile==0.13.1' safetensors \
  'pluggy>=1.5' typer rich platformdirs filelock 'pytest>=8'

# A test-only ttc plugin (entry point group ttc_plugins) that exercises ttc_accept_token end to end.
# (built from a temporary copy, so no build/ or .egg-info lands in the checkout)
FIXTURE_TMP="$(mktemp -d)"
cp "$HERE/fixture_plugin/pyproject.toml" "$HERE/fixture_plugin/ttc_sglang_test_plugin.py" "$FIXTURE_TMP/"
"$PY" -m pip install -q --no-deps --no-build-isolation "$FIXTURE_TMP"
rm -rf "$FIXTURE_TMP"

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
