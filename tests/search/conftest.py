from __future__ import annotations

import pytest
from search_support import build_pm


@pytest.fixture
def search_pm():
    return build_pm()
