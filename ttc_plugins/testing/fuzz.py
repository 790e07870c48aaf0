"""Fuzzed ``ttc`` sections and requests (hypothesis), the same for every engine's OpenAI server
(the integration suites) and for the engine-free parser (``tests/test_params_fuzz.py``).

A case is a ``/v1/completions`` body: a ``ttc`` section drawn from near-valid shapes (the right
keys with wrong types, out-of-range, non-finite or huge values, unknown names and keys, deep
nesting, wrong vector lengths) or from arbitrary JSON, sometimes with request fields that conflict
with it (``n`` > 1, ``stream``, ``logprobs``). The engine suites say how the section travels and
run :func:`check_case` on each answer. Every request asks for at most ``MAX_TOKENS`` tokens, which
also caps any valid search a case happens to draw (an explicit ``max_tokens`` caps a search's paths).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import strategies as st

from .tiny_model import TINY_HIDDEN

MAX_TOKENS = 3
#: cases per engine in CI; the long run sets TTC_FUZZ_EXAMPLES (e.g. 20000)
EXAMPLES = int(os.environ.get("TTC_FUZZ_EXAMPLES", "500"))
#: a valid plain request and a valid search run after every this many cases
CHECK_EVERY = 50
HIDDEN = TINY_HIDDEN  # the tiny model every engine suite serves

# an error names its field: "ttc.decoding.0.token_id: ...", "stream: ...", "prompt: ..."
FIELD_RE = re.compile(r"^(ttc(\.[A-Za-z0-9_]+)*|stream|n|best_of|echo|logprobs|prompt|max_tokens|custom_params)\b")

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2048, 49152, 10**9, 1e308, -1e308, 1e-320, math.nan, math.inf]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12),
                    st.sampled_from(["4", "null", "", "steering", "beam", "x" * 5000]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                           max_leaves=20)


def _deep(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = {"x": node}
    return node


deep = st.integers(min_value=17, max_value=400).map(_deep)
anything = st.one_of(json_values, deep)


def _maybe(value_strategy):
    """Mostly the plausible value, sometimes anything at all."""
    return st.one_of(value_strategy, value_strategy, value_strategy, anything)


def _obj(required: dict, optional: dict):
    extra = st.dictionaries(st.sampled_from(["colour", "layer", "tokens", "x"]), anything, max_size=1)
    return st.tuples(st.fixed_dictionaries(required, optional=optional), extra).map(lambda t: {**t[0], **t[1]})


vectors = st.one_of(
    st.lists(st.floats(min_value=-4, max_value=4), min_size=HIDDEN, max_size=HIDDEN),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=HIDDEN + 3),
    st.just([1e308] * HIDDEN), st.text(max_size=10),
)
control = _obj({"name": _maybe(st.sampled_from(["steering", "ttc_layer", "nope"]))},
               {"layers": _maybe(st.lists(st.integers(-2, 6), max_size=4)), "vector": _maybe(vectors),
                "scale": _maybe(numbers), "mode": _maybe(st.sampled_from(["add", "project", "mul"])),
                "preserve_norm": _maybe(st.booleans()), "horizon": _maybe(st.integers(-1, 2000))})
decoder = _obj({"name": _maybe(st.sampled_from(["force_token", "ban_tokens", "nope"]))},
               {"token_id": _maybe(st.integers(-2, 3 * 2048)), "max_forced": _maybe(st.integers(-1, 4)),
                "token_ids": _maybe(st.lists(st.integers(-2, 3 * 2048), max_size=6))})
search = _obj({"strategy": _maybe(st.sampled_from(["beam", "best_of_n", "self_consistency", "dvts", "rebase",
                                                   "particle_filter", "nope"]))},
              {"width": _maybe(st.integers(-1, 4)), "max_steps": _maybe(st.integers(-1, 2)),
               "max_step_tokens": _maybe(st.integers(-1, 3)), "temperature": _maybe(numbers),
               "top_p": _maybe(numbers), "step_delimiter": _maybe(st.text(max_size=3)),
               "scorer": _maybe(st.sampled_from(["logprob", "nope", "integer_answer"])),
               "scorer_args": _maybe(st.dictionaries(st.text(max_size=5), scalars, max_size=2)),
               "seed": _maybe(st.integers(-1, 3))})
beam = _obj({}, {"width": _maybe(st.integers(-1, 5)), "length_penalty": _maybe(numbers),
                 "early_stopping": _maybe(st.sampled_from([True, False, "never", "sometimes"]))})
sections = st.one_of(
    st.fixed_dictionaries({}, optional={"control": _maybe(control), "decoding": _maybe(st.lists(decoder, max_size=3)),
                                        "search": _maybe(search), "beam": _maybe(beam),
                                        "bogus": anything}),
    anything,
)
#: request fields that may conflict with a section
request_fields = st.fixed_dictionaries({}, optional={"n": st.integers(1, 3), "stream": st.booleans(),
                                                     "logprobs": st.sampled_from([None, 1])})


@dataclass
class Tally:
    """What the cases did, for the figures."""

    engine: str
    cases: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    timeouts: int = 0
    unnamed: list[str] = field(default_factory=list)
    checks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "cases": self.cases, "2xx": self.ok, "4xx": self.client_errors,
                "5xx": self.server_errors, "timeouts": self.timeouts, "4xx without a field": len(self.unnamed),
                "health checks passed": self.checks}


def error_message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if "message" in body:
            return str(body["message"])
        if "detail" in body:
            return str(body["detail"])
    return str(body)


def check_case(tally: Tally, status: int | None, body: Any, case: Any) -> None:
    """One answer: a 2xx, or a 4xx whose message starts with the field it is about. A 5xx or a
    timeout (status None) fails the case."""
    tally.cases += 1
    if status is None:
        tally.timeouts += 1
        raise AssertionError(f"no answer (timeout) for {case!r:.2000}")
    if status >= 500:
        tally.server_errors += 1
        raise AssertionError(f"{status} for {case!r:.2000}: {error_message(body)[:2000]}")
    if 200 <= status < 300:
        tally.ok += 1
        return
    assert 400 <= status < 500, (status, case)
    tally.client_errors += 1
    message = error_message(body)
    if not FIELD_RE.match(message):
        tally.unnamed.append(message[:300])
        raise AssertionError(f"a {status} that names no field: {message[:1000]!r} for {case!r:.1000}")


def post(url: str, body: dict[str, Any], timeout: float = 120) -> tuple[int | None, Any]:
    """POST ``body``; ``(status, parsed body)``, or ``(None, None)`` when no answer came in time."""
    import requests

    try:
        r = requests.post(url, json=body, timeout=timeout)
    except requests.Timeout:
        return None, None
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text[:2000]


def run(engine: str, base_url: str, model: str, carry: Callable[[Any], dict[str, Any]],
        search_ok: Callable[[], None], out_dir: str | None = None) -> Tally:
    """Run ``EXAMPLES`` fuzzed ``/v1/completions`` cases against the server at ``base_url``;
    ``carry(section)`` is the body entry that carries a ``ttc`` section on this engine. After
    every ``CHECK_EVERY`` cases and at the end, a plain request must succeed and ``search_ok()``
    (a valid search) must pass. Writes the tally as JSON to ``out_dir/fuzz-<engine>.json`` when
    given."""
    import json
    from pathlib import Path

    from hypothesis import HealthCheck, given, settings

    tally = Tally(engine)
    url = f"{base_url}/v1/completions"

    def health() -> None:
        status, body = post(url, {"model": model, "prompt": "x = 1", "max_tokens": 2})
        assert status == 200 and body["usage"]["completion_tokens"] == 2, (status, body)
        search_ok()
        tally.checks += 1

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize=os.environ.get("TTC_FUZZ_RANDOM") != "1",
              suppress_health_check=list(HealthCheck))
    @given(section=sections, fields=request_fields)
    def one(section, fields):
        body = {"model": model, "prompt": "x = 1", "max_tokens": MAX_TOKENS, **fields, **carry(section)}
        status, answer = post(url, body)
        check_case(tally, status, answer, {"ttc": section, **fields})
        if tally.cases % CHECK_EVERY == 0:
            health()

    one()
    health()
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / f"fuzz-{engine}.json").write_text(json.dumps(tally.as_dict(), indent=1))
    print(f"[fuzz] {json.dumps(tally.as_dict())}")
    return tally


def as_json_text_if_needed(section: Any) -> Any:
    """The section itself when it is strict JSON, else its JSON text (NaN/infinity are not JSON:
    an HTTP body carrying them is the framework's to refuse, not ours)."""
    import json

    try:
        json.dumps(section, allow_nan=False)
        return section
    except ValueError:
        return json.dumps(section)
