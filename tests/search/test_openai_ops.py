"""The HTTP client side of :class:`ttc_plugins.search.openai_ops.OpenAIEngineOps`: what it sends and
how it reads answers and errors. Its agreement with a real vLLM server (same seeds, same search
result as the in-server search) is ``integration/vllm/test_search_server.py``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ttc_plugins.search.engine import ExtendRequest, SamplingConfig, StepStop
from ttc_plugins.search.openai_ops import OpenAIEngineOps, OpenAIServerError
from ttc_plugins.types import Branch, RequestContext


class CharTokenizer:
    """One token per character (ids = code points)."""

    bos_token_id = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class Recorder(BaseHTTPRequestHandler):
    """Answers every completion with ``self.server.answer(body)`` and records the bodies."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        status, answer = self.server.answer(body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.bodies = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def _ops(srv, **kw):
    return OpenAIEngineOps(f"http://127.0.0.1:{srv.server_port}", "m", CharTokenizer(), add_bos=False, **kw)


def _answer(text, finish="stop", stop_reason="\n", cached=0):
    return {"choices": [{"text": text, "finish_reason": finish, "stop_reason": stop_reason,
                         "logprobs": {"tokens": [f"token_id:{ord(c)}" for c in text],
                                      "token_logprobs": [-0.5] * len(text)}}],
            "usage": {"completion_tokens": len(text), "prompt_tokens_details": {"cached_tokens": cached}}}


def _request(n=1, temperature=0.7):
    root = Branch(id="r", parent_id=None, prompt_token_ids=(ord("a"), ord("b")))
    return ExtendRequest(ctx=RequestContext(request_id="r"), branch=root, n=n,
                         until=StepStop(delimiter="\n", max_tokens=5, stop=("END",)),
                         sampling=SamplingConfig(temperature=temperature, seed=3))


def test_extend_sends_token_prompts_with_per_continuation_seeds_and_reads_exact_tokens(server):
    server.answer = lambda body: (200, _answer("xy\n", cached=1))
    ops = _ops(server)
    (steps,) = ops.extend([_request(n=2)])
    assert [b["prompt"] for b in server.bodies] == [[97, 98], [97, 98]]
    assert all(b["stop"] == ["END", "\n"] and b["include_stop_str_in_output"] and b["return_tokens_as_token_ids"]
               and b["max_tokens"] == 5 and b["model"] == "m" for b in server.bodies)
    assert len({b["seed"] for b in server.bodies}) == 2  # continuation i has its own seed
    assert [s.token_ids for s in steps] == [(120, 121, 10)] * 2
    assert steps[0].text == "xy\n" and steps[0].stop_reason == "delimiter" and steps[0].logprob == pytest.approx(-1.5)
    assert steps[0].tokens_reused == 1 and ops.kv_stats().tokens_reused == 2
    assert ops.http_requests == 2


def test_greedy_sends_no_seed_and_stop_reasons_map_like_the_engine_backends(server):
    answers = iter([_answer("ab", "length", None), _answer("END", "stop", "END"), _answer("q", "stop", None)])
    server.answer = lambda body: (200, next(answers))
    ops = _ops(server, max_workers=1)  # answers in request order
    steps = [ops.extend([_request(temperature=0.0)])[0][0] for _ in range(3)]
    assert all("seed" not in b and b["temperature"] == 0.0 for b in server.bodies)
    assert [s.stop_reason for s in steps] == ["length", "stop", "eos"]


def test_a_server_error_is_raised_with_its_status_and_body(server):
    server.answer = lambda body: (400, {"error": {"message": "max_tokens: too large"}})
    with pytest.raises(OpenAIServerError, match="HTTP 400.*max_tokens: too large"):
        _ops(server).extend([_request()])


def test_a_server_without_token_id_tokens_is_named(server):
    answer = _answer("x")
    answer["choices"][0]["logprobs"]["tokens"] = ["x"]
    server.answer = lambda body: (200, answer)
    with pytest.raises(OpenAIServerError, match="return_tokens_as_token_ids"):
        _ops(server).extend([_request()])
