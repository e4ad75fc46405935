from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _forget_reported_lockouts():
    # A lockout is reported once per (user name, address) and cool-off, remembered in the cache across tests.
    cache.clear()
    yield
    cache.clear()
