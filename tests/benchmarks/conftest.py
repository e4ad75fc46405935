"""What the benchmark smoke tests share: the environment that points a subprocess at the test database."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.db import connection


@pytest.fixture
def test_database_env(transactional_db) -> dict[str, str]:
    """Environment for a gunicorn or probe process that must see the test database (committed rows only)."""
    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    url = f"postgres://{quote(db['USER'], safe='')}{password}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    return {"DATABASE_URL": url, "BENCH_DATABASE_NAME": db["NAME"], "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
