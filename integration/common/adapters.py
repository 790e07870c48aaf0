"""The TTC adapter every engine's suite serves: trained in the test session on the tiny model.

A few steps of ``ttc adapter train``'s loop on a toy task open the gate (a fresh adapter adds exact
zeros and would prove nothing); horizons 8 and 24 are the range the file records, so a request
outside 8..24 (other than 0, off) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

LAYER = 1
HORIZONS = (8, 24)


def train_toy_adapter(model_dir: str | Path, out: Path) -> tuple[int, str]:
    """(decoder layer, adapter file) of an adapter trained for 3 steps at ``LAYER`` of ``model_dir``."""
    from ttc_plugins.ttc_layer.train import TrainSettings, train

    out.mkdir(parents=True, exist_ok=True)
    data = out / "toy.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}:", "completion": " a b a b a b"}) + "\n" for i in range(8)))
    result = train(TrainSettings(model=Path(model_dir), out=out, layers=(LAYER,), problems=None, data=data,
                                 horizons=HORIZONS, steps=3, batch_size=4, lr=0.3, warmup_steps=0, checkpoint_every=0,
                                 eval_every=0, chat=False, seed=1234,
                                 adapter={"heads": 2, "state_dim": 8, "control_dim": 8, "b_rank": 4, "q_rank": 4}))
    return LAYER, str(result.adapter_path)
