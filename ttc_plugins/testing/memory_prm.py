"""The in-process reference process reward model: the PRM of
:func:`~ttc_plugins.testing.tiny_model.build_tiny_qwen2_prm` (``weights=True``) run with HF
transformers (a ``Qwen2Model`` body, the ``score`` head Linear -> ReLU -> Linear written out here),
float32. Engine-served PRMs (vLLM pooling runner, SGLang reward models) must return what it
returns; it is also a :class:`~ttc_plugins.scoring.prm.RewardModel` for engine-free searches
(``MemoryEngine(..., reward_models={"prm": MemoryRewardModel.from_pretrained(path)})``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

__all__ = ["MemoryRewardModel"]


class MemoryRewardModel:
    """Per step tag, the softmax probability of label 1 ("correct")."""

    def __init__(self, body: Any, head: Any, tokenizer: Any, step_tag_id: int):
        self.body, self.head, self.tokenizer = body.eval(), head.eval(), tokenizer
        self.step_tag_id = int(step_tag_id)
        self.step_tag = tokenizer.convert_ids_to_tokens(self.step_tag_id)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "MemoryRewardModel":
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        body = Qwen2Model(Qwen2Config(**{k: v for k, v in config.items() if k not in ("architectures", "step_tag_id")}))
        weights = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        body.load_state_dict({k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")})
        h = config["hidden_size"]
        head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, config["num_labels"]))
        head.load_state_dict({k[len("score."):]: v for k, v in weights.items() if k.startswith("score.")})
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return cls(body.float(), head.float(), tok, config["step_tag_id"])

    async def astep_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        return self.step_rewards(texts)  # plain torch: nothing to await

    def step_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        out = []
        with torch.no_grad():
            for text in texts:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                hidden = self.body(input_ids=torch.tensor([ids])).last_hidden_state[0]
                probs = torch.softmax(self.head(hidden), dim=-1)
                tags = [i for i, t in enumerate(ids) if t == self.step_tag_id]
                out.append([float(probs[i, 1]) for i in tags])
        return out
