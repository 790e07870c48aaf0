"""Choosing a search's embedder: registered names, ``engine``, and errors naming the field."""

from __future__ import annotations

import pytest

from ttc_plugins.embedding import ENGINE, HashingEmbedder, resolve_embedder
from ttc_plugins.errors import TTCParamError


def test_names_resolve_to_registered_classes_and_engine_to_none(pm):
    assert resolve_embedder(pm, "hashing") is HashingEmbedder
    assert resolve_embedder(pm, ENGINE) is None


def test_an_unknown_name_is_an_error_naming_the_field_and_the_choices(pm):
    with pytest.raises(TTCParamError) as err:
        resolve_embedder(pm, "no_such_embedder")
    assert err.value.field == "ttc.search.embedder"
    assert "'no_such_embedder'" in str(err.value) and "engine, hashing, minilm" in str(err.value)


def test_an_embedder_that_cannot_run_here_is_an_error_naming_why(pm):
    class Missing(HashingEmbedder):
        name = "missing"

        @classmethod
        def unavailable_reason(cls):
            return "needs the package nowhere-to-be-found"

    pm.embedders.register(Missing)
    with pytest.raises(TTCParamError, match="nowhere-to-be-found") as err:
        resolve_embedder(pm, "missing")
    assert err.value.field == "ttc.search.embedder"
