"""Fixtures of the SGLang integration suites (SGLang on CPU, tiny random Llama): this folder's and
the conformance suite's (loaded as a plugin by ``integration/conftest.py``).

SGLang engines are slow to start on a 2-core box, so there are three, started lazily:

- ``engine``: ONE session-scoped ``sgl.Engine`` with the plugin (loaded through the
  ``sglang.srt.plugins`` entry point in the main, scheduler and detokenizer processes), a named
  vector and a TTC adapter trained in the session configured through ``TTC_SGLANG_CONFIG``;
- ``no_plugin_run``: a child process running the same kind of engine with ``SGLANG_PLUGINS``
  excluding ``ttc`` — the "without the plugin" reference;
- ``server``: ``python -m sglang.launch_server`` with the plugin, for the OpenAI-client tests.

The two child processes are started at collection time (when a collected test needs them), so
their engine starts overlap with the in-process one.

Every SGLang process of the suite shares two files (``TTC_SGLANG_LOG_FILE``: the backend's log,
which proves which processes ran ``register()``; ``TTC_SGL_KERNEL_STANDIN_LOG``: calls into the
``sgl_kernel`` stand-in, which must stay empty).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Appended, not prepended: the repo's source folder ttc_plugins/ must not shadow the installed
# package (the integration sessions install ttc-plugins as a wheel, with its mapped subpackages).
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
sys.path.insert(0, str(HERE))

_RUN_DIR = Path(tempfile.mkdtemp(prefix="ttc-sglang-it-"))
os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["TTC_SGLANG_LOG_FILE"] = str(_RUN_DIR / "ttc-backend.log")
os.environ["TTC_SGL_KERNEL_STANDIN_LOG"] = str(_RUN_DIR / "sgl-kernel-standin-calls.log")

import ttc_sglang_engine as engine_helpers  # noqa: E402

from integration.common import scenarios  # noqa: E402
from integration.common.adapters import train_toy_adapter  # noqa: E402
from integration.common.hf_reference import HFReference  # noqa: E402
from integration.common.server import free_port, stop_server, wait_healthy  # noqa: E402
from integration.common.tiny import tiny_model_dir  # noqa: E402

CHILD_TIMEOUT = 420
#: what SGLang's main process logs when a child (scheduler, detokenizer) died; it does not exit
CHILD_DIED = "Received sigquit from a child process"
_CHILDREN: dict[str, "_Child"] = {}


@functools.lru_cache(maxsize=None)
def _tiny() -> str:
    return str(tiny_model_dir())


@functools.lru_cache(maxsize=None)
def _named_vector() -> tuple[str, tuple[float, ...]]:
    vec = scenarios._vec(7)
    path = _RUN_DIR / "honest.json"
    path.write_text(json.dumps(vec))
    return str(path), tuple(vec)


@functools.lru_cache(maxsize=None)
def _prm() -> tuple[str, int]:
    """The tiny PRM with seeded weights (HF is its reference) and the port of its server."""
    from ttc_plugins.testing import build_tiny_qwen2_prm

    return str(build_tiny_qwen2_prm(weights=True)), free_port()


DOWN_REWARD_MODEL = "prm_down"


@functools.lru_cache(maxsize=None)
def _ttc_adapter() -> tuple[int, str]:
    """The adapter trained in this session (:mod:`integration.common.adapters`), hosted by the
    in-process engine (the servers host none: the conformance suite's refusal runs there)."""
    return train_toy_adapter(_tiny(), _RUN_DIR / "adapters")


@functools.lru_cache(maxsize=None)
def _engine_config(adapters: bool = False) -> str:
    prm_dir, prm_port = _prm()
    ttc_layers = {str(_ttc_adapter()[0]): _ttc_adapter()[1]} if adapters else {}
    return json.dumps({"vectors": {"honest": _named_vector()[0]}, "ttc_layers": ttc_layers,
                       "reward_models": {"prm": {"url": f"http://127.0.0.1:{prm_port}", "model": prm_dir},
                                         # a reward model whose server is down (nothing listens there)
                                         DOWN_REWARD_MODEL: {"url": f"http://127.0.0.1:{free_port()}",
                                                             "model": prm_dir}}})


class _Child:
    """A child process started at collection time, so that its (slow) engine start overlaps with
    the in-process engine's and with the first tests."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        self.name = name
        self.log_path = _RUN_DIR / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.time()

    def tail(self) -> str:
        return self.log_path.read_text()[-4000:]

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=max(1.0, CHILD_TIMEOUT - (time.time() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish in {CHILD_TIMEOUT}s:\n{self.tail()}") from None

    def stop(self) -> None:
        # the child's SGLang scheduler/detokenizer share its (new) process group
        stop_server(self.proc, group=True)


def _start_no_plugin() -> None:
    batches = [{"prompts": scenarios.PROMPTS, "ttcs": [None] * len(scenarios.PROMPTS), "max_tokens": scenarios.MAX_TOKENS}]
    (_RUN_DIR / "baseline-in.json").write_text(json.dumps(batches))
    env = {**os.environ, **engine_helpers.NO_PLUGIN_ENV, "TTC_SGLANG_LOG_FILE": str(_RUN_DIR / "no-plugin-backend.log")}
    env.pop("TTC_SGLANG_CONFIG", None)
    cmd = [sys.executable, str(HERE / "ttc_sglang_engine.py"), _tiny(), str(_RUN_DIR / "baseline-in.json"),
           str(_RUN_DIR / "baseline-out.json")]
    _CHILDREN["no-plugin"] = _Child("no-plugin", cmd, env)


def _launch_server(name: str, port: int, args: dict, *, adapters: bool = False,
                   env_extra: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "sglang.launch_server", "--host", "127.0.0.1", "--port", str(port)]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False:
            cmd += [flag, str(value)]
    child = _Child(name, cmd, {**os.environ, "TTC_SGLANG_CONFIG": _engine_config(adapters), **(env_extra or {})})
    child.url = f"http://127.0.0.1:{port}"
    _CHILDREN[name] = child


def _start_server() -> None:
    _launch_server("server", free_port(), engine_helpers.engine_kwargs(_tiny(), enable_custom_logit_processor=True))


def _start_prm_server() -> None:
    """The tiny PRM served by SGLang in embedding mode (radix cache off: every step's prompt is
    computed whole, as the HF reference does)."""
    prm_dir, port = _prm()
    _launch_server("prm-server", port, engine_helpers.engine_kwargs(prm_dir, is_embedding=True,
                                                                    disable_radix_cache=True))


def pytest_collection_modifyitems(session, config, items):
    if config.option.collectonly:
        return
    needed = {name for item in items for name in getattr(item, "fixturenames", ())}
    if "no_plugin_run" in needed:
        _start_no_plugin()
    if "server" in needed:
        _start_server()
    if "prm_server" in needed:
        _start_prm_server()


def pytest_sessionfinish(session, exitstatus):
    for child in _CHILDREN.values():
        child.stop()


@pytest.fixture(scope="session")
def run_dir() -> Path:
    return _RUN_DIR


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return _tiny()


@pytest.fixture(scope="session")
def named_vector() -> tuple[str, list[float]]:
    path, vec = _named_vector()
    return path, list(vec)


@pytest.fixture(scope="session")
def hf(tiny_model) -> HFReference:
    return HFReference(tiny_model)


@pytest.fixture(scope="session")
def ttc_adapter() -> tuple[int, str]:
    return _ttc_adapter()


@pytest.fixture(scope="session")
def reference(hf, named_vector, ttc_adapter):
    return hf.cached(vectors={"honest": named_vector[0]}, ttc_layers={ttc_adapter[0]: ttc_adapter[1]})


@pytest.fixture(scope="session")
def engine_config() -> str:
    """``TTC_SGLANG_CONFIG`` of the in-process engine: the named vector, the PRM servers, the adapter."""
    return _engine_config(adapters=True)


@pytest.fixture(scope="session")
def engine(tiny_model, engine_config):
    import sglang as sgl

    os.environ["TTC_SGLANG_CONFIG"] = engine_config
    eng = sgl.Engine(**engine_helpers.engine_kwargs(tiny_model))
    yield eng
    eng.shutdown()


@pytest.fixture(scope="session")
def no_plugin_run(tiny_model) -> list:
    """The all-plain batch of the scenarios on an engine without the plugin (child process)."""
    if "no-plugin" not in _CHILDREN:
        _start_no_plugin()
    child = _CHILDREN["no-plugin"]
    assert child.wait() == 0, f"no-plugin engine failed:\n{child.tail()}"
    log = _RUN_DIR / "no-plugin-backend.log"
    assert not log.exists() or "registered" not in log.read_text(), "the plugin loaded in the no-plugin run"
    out = json.loads((_RUN_DIR / "baseline-out.json").read_text())
    return [[(ids, lps) for ids, lps in batch] for batch in out]


def _ready(name: str, start) -> str:
    """Wait until the child server ``name`` (started by ``start`` if not yet) is healthy; its URL.
    A scheduler that dies while the server starts leaves SGLang's main process waiting: its log
    line ends the wait at once."""
    if name not in _CHILDREN:
        start()
    child = _CHILDREN[name]
    try:
        wait_healthy(child.proc, child.url, child.log_path, CHILD_TIMEOUT, since=child.started, dead_if=CHILD_DIED)
    except BaseException:
        child.stop()
        raise
    return child.url


@pytest.fixture(scope="session")
def server(tiny_model):
    """``python -m sglang.launch_server`` with the plugin; yields the base URL."""
    yield _ready("server", _start_server)
    _CHILDREN["server"].stop()


@pytest.fixture(scope="session")
def prm_dir() -> str:
    return _prm()[0]


@pytest.fixture(scope="session")
def prm_server(prm_dir):
    """The tiny PRM on its own SGLang server (``--is-embedding``); the ``server`` names it as the
    reward model ``prm`` in ``TTC_SGLANG_CONFIG``. Yields the base URL."""
    yield _ready("prm-server", _start_prm_server)
    _CHILDREN["prm-server"].stop()


# -- the conformance suite's engine (integration/conformance/engine.py) --------------------------
@pytest.fixture(scope="session")
def engine_settings_key() -> str:
    return "TTC_SGLANG_CONFIG"


@pytest.fixture(scope="session")
def engine_start_error(tiny_model):
    """``TTC_SGLANG_CONFIG`` settings -> what an engine started with them (a child process) printed
    as it stopped."""
    def start(settings: dict) -> str:
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import sglang as sgl, ttc_sglang_engine as h; "
                f"sgl.Engine(**h.engine_kwargs({tiny_model!r})).shutdown()")
        env = {**os.environ, "TTC_SGLANG_CONFIG": json.dumps(settings)}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                              env=env, start_new_session=True)
        assert proc.returncode != 0, f"the engine started with {settings}"
        return proc.stdout + proc.stderr

    return start


@pytest.fixture(scope="session")
def engine_generate(engine):
    def generate(prompts, ttcs, max_tokens, cache_salt=None):
        return engine_helpers.rows(engine_helpers.generate_raw(engine, prompts, ttcs, max_tokens, cache_salt=cache_salt))

    return generate


@pytest.fixture(scope="session")
def engine_generate_served(engine):
    """Like ``engine_generate``, with each request's report: [(token_ids, logprobs, ttc, cached_tokens)]."""
    def generate(prompts, ttcs, max_tokens, cache_salt=None):
        outs = engine_helpers.generate_raw(engine, prompts, ttcs, max_tokens, cache_salt=cache_salt)
        return [(*row, o["meta_info"].get("ttc"), int(o["meta_info"].get("cached_tokens") or 0))
                for row, o in zip(engine_helpers.rows(outs), outs)]

    return generate


@pytest.fixture(scope="session")
def engine_plain_run(no_plugin_run) -> list:
    return no_plugin_run[0]


@pytest.fixture
def engine_ops(engine):
    from ttc_plugins.sglang_backend.search_ops import SGLangEngineOps

    # SGLang honours per-request sampling_seed only with enable_deterministic_inference, which it
    # refuses on CPU (torch_native attention): the suite's ops run unseeded
    return lambda pm: SGLangEngineOps(engine, pm=pm, seeded=False)


@pytest.fixture(scope="session")
def engine_beam(engine):
    from integration.conformance.engine import BeamOut

    def beam(prompts, beam, max_tokens, stop_token_ids=None):
        sp = {"max_new_tokens": max_tokens, "custom_params": {"ttc": {"beam": beam}}}
        if stop_token_ids is not None:
            sp["stop_token_ids"] = stop_token_ids
        outs = engine.generate(input_ids=[list(p) for p in prompts], sampling_params=[sp] * len(prompts))
        outs = outs if isinstance(outs, list) else [outs]
        return [BeamOut(o["output_ids"], o["meta_info"]["finish_reason"]["type"], o["meta_info"]["ttc"]["beam"])
                for o in outs]

    return beam


@pytest.fixture(scope="session")
def engine_eos(engine) -> int | None:
    return engine.tokenizer_manager.tokenizer.eos_token_id


@pytest.fixture(scope="session")
def engine_openai(server):
    """(OpenAI client of the engine's server, model name, ``ttc`` section -> extra_body)."""
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
    return client, client.models.list().data[0].id, lambda ttc: {"custom_params": {"ttc": ttc}}


@pytest.fixture(scope="session")
def engine_search_openai(engine_openai, prm_server):
    """SGLang's server runs searches as it is (no flag to change); its reward model ``prm`` is the
    PRM server, started with it."""
    return engine_openai


@pytest.fixture(scope="session")
def engine_down_reward_model() -> str:
    """A reward model the server is configured with whose server is down."""
    return DOWN_REWARD_MODEL


@pytest.fixture(scope="session")
def engine_prm_rewards(prm_dir, run_dir):
    """texts -> (the PRM's step tag, per-text step probabilities), on an in-process SGLang engine
    serving the tiny PRM (``SGLangRewardModel.over_engine``), in a child process: the suite's own
    in-process engine is a generator."""
    def rewards(texts):
        texts_path, out_path = run_dir / "prm-texts.json", run_dir / "prm-out.json"
        texts_path.write_text(json.dumps(texts))
        # the servers' settings, not the in-process engine's (its adapter is for the policy model)
        env = {**os.environ, "TTC_SGLANG_CONFIG": _engine_config()}
        proc = subprocess.run([sys.executable, str(HERE / "ttc_sglang_engine.py"), "prm", prm_dir, str(texts_path),
                               str(out_path)], capture_output=True, text=True, timeout=420, env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(out_path.read_text())
        return out["step_tag"], out["rewards"]

    return rewards


@pytest.fixture(scope="session")
def engine_search_kv_in_use(server):
    """The server's KV token slots in use (fraction of the pool, SGLang's ``/v1/loads``; the
    radix cache's evictable tokens count as free)."""
    return _kv_in_use(server)


def _kv_in_use(url: str):
    """The server at ``url``: its KV token slots in use (the largest over DP ranks)."""
    import requests

    def in_use() -> float:
        return engine_helpers.kv_token_usage(requests.get(f"{url}/v1/loads", timeout=10).json())

    return in_use


@pytest.fixture(scope="session")
def engine_search_server_rss(server):
    """Resident memory of the server's processes (HTTP/tokenizer, scheduler, detokenizer)."""
    from integration.common.server import tree_rss

    return lambda: tree_rss(_CHILDREN["server"].proc.pid)


@pytest.fixture(scope="module")
def engine_small_kv_openai():
    """Like ``engine_search_openai``, on a server whose KV pool holds 1,024 tokens and whose
    context is 256 tokens: beams and searches must share it."""
    import openai

    _launch_server("small-kv", free_port(), engine_helpers.engine_kwargs(_tiny(), max_total_tokens=1024,
                                                                         context_length=256))
    url = _ready("small-kv", lambda: None)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    yield client, client.models.list().data[0].id, lambda ttc: {"custom_params": {"ttc": ttc}}
    client.close()
    _CHILDREN.pop("small-kv").stop()


@pytest.fixture(scope="session")
def engine_serve(server):
    """One greedy request on the engine's server (native ``/generate``): (token_ids, logprobs)."""
    return _serve_on(server)


def _serve_on(url: str):
    """One greedy request on the server at ``url`` (native ``/generate``): (token_ids, logprobs)."""
    import requests

    def serve(prompt, ttc, max_tokens):
        body = {"input_ids": list(prompt), "sampling_params": engine_helpers.sampling(ttc, max_tokens),
                "return_logprob": True}
        return engine_helpers.rows([requests.post(f"{url}/generate", json=body, timeout=120).json()])[0]

    return serve


@pytest.fixture(scope="session")
def engine_reused_tokens():
    """SGLang reports radix hits per request only (``cached_tokens``): no engine-wide counter."""
    return lambda: None


@pytest.fixture(scope="module")
def engine_replicas():
    """Two servers with ``server``'s settings (plus ``--enable-metrics``: each one's own request
    counter) behind ``sglang-router`` with its default policy (``router_with``: another one, same
    replicas)."""
    import openai

    from integration.common.router import finished_requests, router_running
    from integration.conformance.engine import Replicas

    names = ["replica0", "replica1"]

    def client(base: str):
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
        return c, c.models.list().data[0].id, lambda t: {"custom_params": {"ttc": t}}

    try:
        for name in names:  # both start at once
            _launch_server(name, free_port(), engine_helpers.engine_kwargs(_tiny(), enable_custom_logit_processor=True,
                                                                           enable_metrics=True))
        urls = [_ready(name, lambda: None) for name in names]

        @contextlib.contextmanager
        def router_with(policy: str):
            with router_running("sglang", urls, _RUN_DIR / f"router-{policy}.log", policy=policy) as url:
                yield client(url)

        with router_running("sglang", urls, _RUN_DIR / "router.log") as router_url:
            yield Replicas(router=client(router_url), replicas=[client(u) for u in urls],
                           finished=lambda: [finished_requests("sglang", u) for u in urls], router_with=router_with)
    finally:
        for name in names:
            if name in _CHILDREN:
                _CHILDREN.pop(name).stop()


#: SGLang's flags for each parallel mode of ``engine_parallel``
PARALLEL_ARGS = {"tp2": {"tp_size": 2}, "dp2": {"dp_size": 2}}


@pytest.fixture(scope="module")
def engine_parallel(prm_server):
    """mode -> :class:`Parallel`: ``server``'s settings (its reward model ``prm`` is the PRM
    server) hosting the trained adapter, with two ranks; one at a time. SGLang on CPU binds each
    rank's OpenMP threads to a NUMA node unless told, and refuses two ranks on one node:
    ``SGLANG_CPU_OMP_THREADS_BIND`` gives each rank one CPU of this process's. A mode whose
    server does not start is skipped with SGLang's own error (the last exception its log names)."""
    import openai

    from integration.common.server import ServerStartError
    from integration.conformance.engine import Parallel

    cpus = sorted(os.sched_getaffinity(0))
    running: list[str] = []

    def stop() -> None:
        while running:
            _CHILDREN.pop(running.pop()).stop()

    def start(mode: str) -> Parallel:
        if len(cpus) < 2:
            pytest.skip(f"{mode} needs 2 CPUs, this process may use {cpus}")
        stop()
        name = f"parallel-{mode}"
        _launch_server(name, free_port(), engine_helpers.engine_kwargs(_tiny(), enable_custom_logit_processor=True,
                                                                       **PARALLEL_ARGS[mode]),
                       adapters=True, env_extra={"SGLANG_CPU_OMP_THREADS_BIND": f"{cpus[0]}|{cpus[1]}"})
        running.append(name)
        try:
            url = _ready(name, lambda: None)
        except ServerStartError as exc:
            errors = [ln.strip() for ln in str(exc).splitlines() if re.match(r"^\w*(Error|Exception)\b", ln.strip())]
            # SGLang gets as far as one scheduler per rank (its log lines are tagged TPn / DPn):
            # each must have loaded the plugin before SGLang's own error (test_tensor_parallel
            # covers what the controls do in them)
            log = _CHILDREN[name].log_path.read_text(errors="replace")
            started = engine_helpers.started_ranks(log)
            registered = engine_helpers.rank_processes(log)
            if len(registered) < len(started):
                pytest.fail(f"{mode}: SGLang started the ranks {sorted(started)}, the plugin registered in the "
                            f"scheduler processes {sorted(registered)} only")
            pytest.skip(f"SGLang on CPU cannot serve {mode} ({PARALLEL_ARGS[mode]}): "
                        f"{errors[-1] if errors else str(exc)[-300:]} (after the plugin registered in the "
                        f"schedulers of the {len(started)} ranks it started)")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        target = (client, client.models.list().data[0].id, lambda t: {"custom_params": {"ttc": t}})
        log_path = _CHILDREN[name].log_path
        return Parallel(openai=target, serve=_serve_on(url), kv_in_use=_kv_in_use(url),
                        rank_processes=lambda: engine_helpers.rank_processes(log_path.read_text(errors="replace")))

    yield start
    stop()
