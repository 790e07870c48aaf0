"""Fuzzed ``ttc`` sections through the engine-free parser (the same strategies the engine suites
send over HTTP): every input is accepted or refused with a ``TTCParamError`` naming its field;
nothing else ever escapes (no RecursionError, TypeError, OverflowError, ...)."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from ttc_plugins.errors import TTCParamError  # noqa: E402
from ttc_plugins.testing import fuzz  # noqa: E402
from ttc_plugins.types import EngineFacts  # noqa: E402

FACTS = EngineFacts(vocab_size=2048, hidden_size=fuzz.HIDDEN, num_layers=4)


@settings(max_examples=500, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(section=fuzz.sections)
def test_every_section_parses_or_names_its_field(pm, section):
    try:
        params = pm.parse_params(section, FACTS)
    except TTCParamError as exc:
        assert fuzz.FIELD_RE.match(str(exc)), str(exc)
        return
    if params is not None:  # what the frontend sends on re-parses the same way in the worker
        assert pm.parse_params(params.to_json()) == params
