"""``Qwen2ForProcessRewardModel`` for SGLang (0.5.23 ships only the outcome ``Qwen2ForRewardModel``).

The same network as vLLM's ``qwen2_rm.py`` and Qwen2.5-Math-PRM: a Qwen2 body and the ``score`` head
Linear(h, h) -> ReLU -> Linear(h, num_labels=2). SGLang's pooled embedding path returns one vector
per request, so the model returns the head's logits at the LAST token; a PRM client asks for the
reward of step k with the prompt cut right after step k's tag
(:class:`~ttc_plugins.sglang_backend.reward_model.SGLangRewardModel`). Served with ``is_embedding``.
"""

from __future__ import annotations

from torch import nn

from sglang.srt.models.qwen2_rm import Qwen2ForRewardModel


class Qwen2ForProcessRewardModel(Qwen2ForRewardModel):
    def __init__(self, config, quant_config=None, prefix: str = "") -> None:
        super().__init__(config, quant_config=quant_config, prefix=prefix)
        self.num_labels = int(getattr(config, "num_labels", 2) or 2)
        self.score[2] = nn.Linear(config.hidden_size, self.num_labels)


EntryClass = [Qwen2ForProcessRewardModel]
