"""Engine-independent behavioural scenarios: the same requests and checks for every backend.

A backend's suite provides ``generate(prompts, ttcs, max_tokens) -> list[(token_ids, logprobs)]``
(greedy, one logprob per generated token: the chosen token's raw logprob), submitting all prompts
as ONE batch so that plain, steered and decoded requests share forward passes.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

Result = tuple[list[int], list[float]]
Generate = Callable[[Sequence[Sequence[int]], Sequence[dict | None], int], list[Result]]

HIDDEN = 128  # the tiny model's hidden size
MAX_TOKENS = 12
LOGPROB_ATOL = 2e-3  # float32 engine kernels vs HF eager float32


def _vec(seed: int, n: int = HIDDEN, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.gauss(0.0, 1.0) * scale, 6) for _ in range(n)]


def _prompt(seed: int, length: int, vocab: int = 2048) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(2, vocab) for _ in range(length)]


PROMPTS: list[list[int]] = [_prompt(i, n) for i, n in enumerate([7, 23, 12, 40, 5, 31, 18, 9])]

STEER_A = {"control": {"name": "steering", "layers": [1], "vector": _vec(1), "scale": 4.0}}
STEER_B = {
    "control": {
        "name": "steering", "layers": [0, 2], "vector": _vec(2), "scale": 1.5, "mode": "project", "preserve_norm": True,
    }
}
STEER_A_NORM = {"control": {**STEER_A["control"], "preserve_norm": True}}
FORCE = {"decoding": [{"name": "force_token", "token_id": 42, "max_forced": 6}]}
STEER_AND_BAN = {**STEER_A, "decoding": [{"name": "ban_tokens", "token_ids": list(range(100, 400))}]}

#: one batch: plain requests interleaved with two steering configs, a decoder and a combination
MIXED_TTCS: list[dict | None] = [None, STEER_A, None, STEER_B, FORCE, STEER_A_NORM, None, STEER_AND_BAN]


def plain_indices(ttcs: Sequence[dict | None]) -> list[int]:
    return [i for i, t in enumerate(ttcs) if t is None]


def assert_bit_identical(got: Sequence[Result], ref: Sequence[Result], what: str) -> None:
    for i, ((g_ids, g_lp), (r_ids, r_lp)) in enumerate(zip(got, ref, strict=True)):
        assert g_ids == r_ids, f"{what}[{i}]: tokens differ: {g_ids} != {r_ids}"
        assert g_lp == r_lp, f"{what}[{i}]: logprobs not bit-identical: {g_lp} != {r_lp}"


def assert_matches(got: Sequence[Result], ref: Sequence[Result], what: str, atol: float = LOGPROB_ATOL) -> None:
    for i, ((g_ids, g_lp), (r_ids, r_lp)) in enumerate(zip(got, ref, strict=True)):
        assert g_ids == r_ids, f"{what}[{i}]: greedy tokens differ from the reference: {g_ids} != {r_ids}"
        worst = max((abs(a - b) for a, b in zip(g_lp, r_lp)), default=0.0)
        assert worst <= atol, f"{what}[{i}]: logprob off by {worst:.2e} > {atol:.0e}: {g_lp} vs {r_lp}"


def assert_steering_changes_output(steered: Sequence[Result], plain: Sequence[Result], what: str) -> None:
    """Guards the test itself: a control that changes nothing would make every check vacuous."""
    for i, (s, p) in enumerate(zip(steered, plain, strict=True)):
        assert s[0] != p[0] or max(abs(a - b) for a, b in zip(s[1], p[1])) > 1e-2, (
            f"{what}[{i}]: steering did not change the output; the scenario proves nothing"
        )


def mixed_batch(generate: Generate, reference: Generate, plain_reference: list[Result] | None = None,
                max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """Run the mixed batch; check steered/decoded rows against the reference. Returns the rows
    for backend-specific checks (plain rows against a run without the plugin)."""
    got = generate(PROMPTS, MIXED_TTCS, max_tokens)
    ref = reference(PROMPTS, MIXED_TTCS, max_tokens)
    controlled = [i for i, t in enumerate(MIXED_TTCS) if t is not None]
    assert_matches([got[i] for i in controlled], [ref[i] for i in controlled], "controlled rows vs HF")
    plain_ref = reference(PROMPTS, [None] * len(PROMPTS), max_tokens)
    assert_matches([got[i] for i in plain_indices(MIXED_TTCS)], [plain_ref[i] for i in plain_indices(MIXED_TTCS)],
                   "plain rows vs HF")
    steered = [i for i, t in enumerate(MIXED_TTCS) if t is not None and "control" in t]
    assert_steering_changes_output([ref[i] for i in steered], [plain_ref[i] for i in steered], "reference")
    assert all(t == 42 for t in got[4][0][:6]), f"force_token not applied: {got[4][0]}"
    assert not any(100 <= t < 400 for t in got[7][0]), f"ban_tokens not applied: {got[7][0]}"
    return {"got": got, "ref": ref}


#: a prompt spanning several KV blocks (block size 128 on CPU), for prefix-cache isolation
LONG_PROMPT = _prompt(100, 460)
# The steering used on LONG_PROMPT by the prefix-cache isolation and fork scenarios.
LONG_STEER = {"control": {"name": "steering", "layers": [1, 3], "vector": _vec(11), "scale": 3.0}}


def ttc_layer(horizon: int, scale: float = 1.0, layers: Sequence[int] = (1,)) -> dict:
    """A ``ttc_layer`` control through the suite's trained adapter (:mod:`.adapters`, layer 1)."""
    return {"control": {"name": "ttc_layer", "layers": list(layers), "horizon": horizon, "scale": scale}}


#: adapter off, two horizons (one scaled), horizon 0 (off), a steered request: one batch
TTC_LAYER_TTCS = [None, ttc_layer(8), ttc_layer(24, scale=2.0), ttc_layer(0), STEER_A]
