"""What an engine provides to the conformance suite: fixtures with these names, defined in its
``integration/<engine>/fixtures.py`` (loaded by ``integration/conftest.py``). A third engine
plugs in by providing the same fixtures; the suite's tests never name an engine.

- ``engine_name``: ``"vllm"``, ``"sglang"``, ...
- ``tiny_model``, ``hf``, ``reference``, ``named_vector``: the suite's tiny model, its HF
  reference (:mod:`integration.common.hf_reference`) and the named steering vector ``honest``
  the engine was started with.
- ``engine_generate(prompts, ttcs, max_tokens, cache_salt=None) -> [(token_ids, logprobs)]``:
  one greedy batch on the in-process engine with the plugin (:mod:`integration.common.scenarios`).
- ``engine_generate_served(...)``: the same, each row with the request's report:
  ``(token_ids, logprobs, ttc, cached_tokens)`` (``ttc``: what the engine answered under ``ttc``,
  ``None`` for a plain request; ``cached_tokens``: prompt tokens the engine served from its cache).
- ``engine_plain_run``: the scenarios' all-plain batch on an engine without the plugin.
- ``engine_ops(pm) -> EngineOps``: the engine's synchronous search operations over the in-process
  engine, with the given plugin manager (function scope: the engine fixture cleans up after it).
- ``engine_beam(prompts, beam, max_tokens, stop_token_ids=None) -> [BeamOut]``: ``ttc.beam``
  requests on the in-process engine.
- ``engine_eos``: the tokenizer's EOS id.
- ``engine_reused_tokens() -> int | None``: prompt tokens the engine itself counts as reused so far
  (its prefix-cache hits plus in-place fork sharing), ``None`` where it keeps no such counter.
- ``engine_openai``: (OpenAI client of the engine's own server started with the plugin, model
  name, ``ttc`` section -> the request's ``extra_body``).
- ``engine_serve(prompt_ids, ttc, max_tokens) -> (token_ids, logprobs)``: one greedy request on
  that server.
- ``engine_search_openai``: like ``engine_openai``, on a server of the engine that runs searches
  (``ttc.search``) and serves the tiny PRM as the reward model ``prm``; the same server where the
  engine needs no other setting for them.
- ``engine_search_kv_in_use() -> float``: that server's KV pool in use (a fraction, the engine's
  own gauge; cached blocks of finished requests count as free).
- ``engine_search_server_rss() -> {process: bytes}``: resident memory of that server's processes.
- ``engine_small_kv_openai``: like ``engine_search_openai`` (module scope), on a server whose KV
  pool holds 1,024 tokens and whose context is 256.
- ``engine_down_reward_model``: the name of a reward model that server is configured with but that
  does not answer.
- ``engine_settings_key``: where the engine's plugin settings live (``additional_config.ttc``,
  ``TTC_SGLANG_CONFIG``); ``engine_start_error(settings) -> str``: start an engine with those
  settings, which must fail, and return what it said.
- ``engine_replicas`` (module scope): :class:`Replicas`, two search-serving servers of the engine
  (each with the same settings as ``engine_search_openai``'s, reward models aside) behind the
  engine's own router (:mod:`integration.common.router`), with its default routing policy.
- ``engine_parallel(mode) -> Parallel`` (module scope): the search-serving server's settings with
  two ranks (``mode``: ``"tp2"`` tensor parallelism 2, ``"dp2"`` data parallelism 2, the engine's
  own flags); it calls ``pytest.skip`` with the engine's own error where its CPU build cannot run
  the mode.
- ``prm_dir``, ``engine_prm_rewards(texts) -> (step_tag, [[p, ...], ...])``: the tiny PRM and its
  step probabilities from the engine's own in-process reward model.

Every engine environment also has the test-only plugin ``integration/common/fixture_plugin``
installed (nox's ``install_test_plugin``): its faulty components are what ``test_faults.py`` injects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager


@dataclass
class BeamOut:
    """One ``ttc.beam`` request's answer: the engine's output (the best beam) and the report."""

    token_ids: list[int]
    finish_reason: str
    report: dict[str, Any]


@dataclass
class Replicas:
    """Two replicas of a server behind the engine's router: ``router`` and each of ``replicas`` is
    (OpenAI client, model name, ``ttc`` section -> extra_body); ``finished()`` is each replica's
    count of finished engine requests so far, read from its own metrics; ``router_with(policy)``
    a context manager: another router of the engine over the same replicas, with that routing
    policy, as such a target."""

    router: tuple[Any, str, Callable[[dict], dict]]
    replicas: list[tuple[Any, str, Callable[[dict], dict]]]
    finished: Callable[[], list[int]]
    router_with: Callable[[str], ContextManager[tuple[Any, str, Callable[[dict], dict]]]]


@dataclass
class Parallel:
    """A server of the engine with more than one rank: ``openai`` as ``engine_openai``;
    ``serve(prompt_ids, ttc, max_tokens) -> (token_ids, logprobs)`` one greedy request;
    ``kv_in_use() -> float`` its KV pool in use (the largest over ranks);
    ``rank_processes() -> {pid: name}`` the processes that run the model's ranks (one per rank)
    whose log says the plugin registered there."""

    openai: tuple[Any, str, Callable[[dict], dict]]
    serve: Callable[..., tuple[list[int], list[float]]]
    kv_in_use: Callable[[], float]
    rank_processes: Callable[[], dict[int, str]]
