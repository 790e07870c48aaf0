"""``ttc_accept_token`` on vLLM: a rejected token ends the request (EOS is forced next step)."""

from __future__ import annotations

import pytest

from integration.common import scenarios
from ttc_plugins import hookimpl
from ttc_plugins.manager import get_plugin_manager


class RejectAt:
    """Rejects the token at ``position`` of every opted-in request; records what it saw."""

    def __init__(self, position: int):
        self.position = position
        self.seen: list[tuple[str, int, int]] = []

    @hookimpl
    def ttc_accept_token(self, ctx, token_id, position):
        self.seen.append((ctx.request_id, token_id, position))
        return False if position == self.position else None


@pytest.fixture
def reject_at_2():
    pm = get_plugin_manager()  # the in-process engine's worker uses this process's manager
    plugin = RejectAt(2)
    name = pm.register(plugin, name="test-reject-at-2")
    yield plugin
    pm.unregister(name)


def test_rejected_token_ends_the_request_and_plain_requests_run_on(eager_llm, reject_at_2):
    from vllm import SamplingParams

    eos = eager_llm.get_tokenizer().eos_token_id
    opted = SamplingParams(max_tokens=12, temperature=0.0, extra_args={"ttc": {}}, stop_token_ids=[])
    plain = SamplingParams(max_tokens=12, temperature=0.0)
    prompts = [{"prompt_token_ids": p} for p in scenarios.PROMPTS[:2]]
    got_opted, got_plain = eager_llm.generate(prompts, [opted, plain], use_tqdm=False)
    tokens = list(got_opted.outputs[0].token_ids)
    assert len(tokens) == 4 and tokens[-1] == eos, tokens  # 3 judged tokens, the third rejected, then EOS
    assert got_opted.outputs[0].finish_reason == "stop"
    assert [p for _, _, p in reject_at_2.seen] == [0, 1, 2]  # judged once each, nothing after the rejection
    assert [t for _, t, _ in reject_at_2.seen] == tokens[:3]
    assert len(got_plain.outputs[0].token_ids) == 12  # the plain request is not judged and runs on
