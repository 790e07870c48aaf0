"""A BERT-style sentence embedder from a local model directory: mean pooling over the attention
mask, then L2 normalisation (what all-MiniLM-L6-v2's sentence-transformers pipeline does), with
plain ``transformers``: sentence-transformers is not needed at run time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from .base import Embedder


class SentenceEmbedder(Embedder):
    """Embeds with the model in ``model_dir`` (``config.json``, weights, ``tokenizer.json``),
    loaded on the first call with ``local_files_only`` (nothing is downloaded; works with
    ``HF_HUB_OFFLINE=1``). Calls are serialised: a fast tokenizer with padding and truncation
    set is not safe to share between threads, and concurrent searches share the instance."""

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", max_length: int = 256):
        self.model_dir, self.device, self.max_length = Path(model_dir), device, max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).to(self.device).eval()

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        if not texts:
            return []
        with self._lock:
            if self._model is None:
                self._load()
            enc = self._tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled.float(), dim=-1).tolist()
