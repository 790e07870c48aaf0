"""Helpers shared by the SGLang suite and its child processes: engine settings, batched generate.

Run as a script it is the "without the plugin" reference: an ``sgl.Engine`` started with
``SGLANG_PLUGINS`` naming no installed plugin (SGLang's allow-list), so ``ttc`` never loads in any
process; it generates the given batches and prints them as JSON::

    python ttc_sglang_engine.py MODEL_DIR BATCHES_JSON OUT_JSON
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Sequence

os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

NO_PLUGIN_ENV = {"SGLANG_PLUGINS": "ttc-disabled-for-baseline"}
#: the line ``register()`` logs in every SGLang process it runs in (its role: main, scheduler, ...)
REGISTERED = re.compile(r"ttc-plugins: sglang backend registered \((\w[\w-]*), pid (\d+)\)")


def rank_processes(log: str) -> dict[int, str]:
    """The processes that run the model's ranks (SGLang's schedulers: one per TP rank of each DP
    rank) whose ``register()`` line is in ``log``."""
    return {int(pid): role for role, pid in REGISTERED.findall(log) if role == "scheduler"}


#: the rank tag SGLang puts on a scheduler's log lines (``[<time> TP1]``, ``[<time> DP0 TP1]``)
RANK_TAG = re.compile(r"^\[[^\]]* ((?:DP\d+ )?TP\d+)\]", re.M)


def started_ranks(log: str) -> set[str]:
    """The ranks whose scheduler logged at least one line in ``log`` (e.g. ``{"TP0", "TP1"}``)."""
    return set(RANK_TAG.findall(log))


def engine_kwargs(model_dir: str, **extra: Any) -> dict[str, Any]:
    """The CPU settings every engine of the suite uses (see README.md)."""
    kw = dict(
        model_path=model_dir,
        device="cpu",
        attention_backend="torch_native",
        disable_cuda_graph=True,
        disable_overlap_schedule=True,
        mem_fraction_static=0.05,
        max_total_tokens=8192,
        dtype="float32",
        random_seed=0,
        log_level="error",
    )
    kw.update(extra)
    return kw


def sampling(ttc: dict | None, max_tokens: int) -> dict[str, Any]:
    sp: dict[str, Any] = {"max_new_tokens": max_tokens, "ignore_eos": True, "temperature": 0.0}
    if ttc is not None:
        sp["custom_params"] = {"ttc": ttc}
    return sp


def generate_raw(engine, prompts: Sequence[Sequence[int]], ttcs: Sequence[dict | None], max_tokens: int, **kw) -> list[dict]:
    """One batched ``Engine.generate`` call (all prompts share forward passes)."""
    outs = engine.generate(
        input_ids=[list(p) for p in prompts],
        sampling_params=[sampling(t, max_tokens) for t in ttcs],
        return_logprob=True,
        **kw,
    )
    return outs if isinstance(outs, list) else [outs]


def rows(outs: Sequence[dict]) -> list[tuple[list[int], list[float]]]:
    """(token ids, chosen-token logprobs) per request, the scenarios' result shape."""
    result = []
    for o in outs:
        lp = o["meta_info"]["output_token_logprobs"]
        result.append(([int(t) for _, t, _ in lp], [float(v) for v, _, _ in lp]))
    return result


def generate(engine, prompts, ttcs, max_tokens: int) -> list[tuple[list[int], list[float]]]:
    return rows(generate_raw(engine, prompts, ttcs, max_tokens))


def main(argv: list[str]) -> int:
    model_dir, batches_path, out_path = argv
    import sglang as sgl

    batches = json.loads(open(batches_path).read())
    engine = sgl.Engine(**engine_kwargs(model_dir))
    try:
        result = [generate(engine, b["prompts"], b["ttcs"], b["max_tokens"]) for b in batches]
    finally:
        engine.shutdown()
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


def prm_main(argv: list[str]) -> int:
    """``prm PRM_DIR TEXTS.json OUT.json``: the step rewards of each text from the PRM on an
    in-process engine (embedding mode, radix cache off as in the suite's PRM server), through ``SGLangRewardModel.over_engine``."""
    prm_dir, texts_path, out_path = argv
    import sglang as sgl

    from ttc_plugins.sglang_backend.reward_model import SGLangRewardModel

    texts = json.loads(open(texts_path).read())
    engine = sgl.Engine(**engine_kwargs(prm_dir, is_embedding=True, disable_radix_cache=True))
    try:
        rm = SGLangRewardModel.over_engine(engine)
        result = {"step_tag": rm.step_tag, "rewards": rm.step_rewards(texts)}
    finally:
        engine.shutdown()
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(prm_main(args[1:]) if args[:1] == ["prm"] else main(args))


def kv_token_usage(loads: dict) -> float:
    """The KV pool's fraction in use in SGLang's ``/v1/loads`` answer (the largest over DP ranks;
    ``token_usage`` sits in each rank's entry or one of its sections)."""
    def find(d: Any) -> float | None:
        if isinstance(d, dict):
            if "token_usage" in d:
                return float(d["token_usage"])
            for v in d.values():
                got = find(v)
                if got is not None:
                    return got
        return None

    usages = [find(rank) for rank in loads["loads"]]
    if not usages or any(u is None for u in usages):
        raise KeyError(f"no token_usage in /v1/loads: {loads}")
    return max(usages)
