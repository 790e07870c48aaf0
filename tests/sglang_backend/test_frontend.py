"""SGLang-only frontend rules: a ``ttc.beam`` request against SGLang's own sampling settings, and
finish reasons (engine-free; the shared request rules are tested in ``tests/runtime``)."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.sglang_backend.frontend import beam_rows, check_beam, finish_reason_name


@pytest.mark.parametrize("kw, field", [
    ({"n": 2}, "n"),
    ({"stop_strs": ["\n"]}, "stop"),
    ({"return_logprob": True}, "return_logprob"),
    ({"beam_width": 4}, "beam_width"),
])
def test_check_beam_names_the_field(kw, field):
    args = {"n": 1, "stop_strs": None, "return_logprob": False, "beam_width": None, **kw}
    with pytest.raises(TTCParamError) as exc:
        check_beam(**args)
    assert exc.value.field == field


def test_check_beam_sends_at_least_two_rows():
    assert beam_rows(1) == 2  # SGLang has no 1-wide beam group
    assert beam_rows(5) == 5
    check_beam(None, [], False, 1)  # nothing to refuse


def test_finish_reason_name():
    assert finish_reason_name({"type": "length", "length": 3}) == "length"
    assert finish_reason_name(None) is None and finish_reason_name("stop") == "stop"
