from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection


def test_database_is_postgresql():
    assert connection.vendor == "postgresql"


@pytest.mark.req("R22")
def test_production_settings_pass_the_deployment_checks():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "x" * 20 + "k3y-for-the-deploy-check-only-2c9f1e7a8b6d5",
        "ALLOWED_HOSTS": "exotrial.example.org",
        "DATABASE_URL": "postgres://exotrial@db.invalid:5432/exotrial",
    }
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "no issues" in completed.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "",
        "ALLOWED_HOSTS": "exotrial.example.org",
        "DATABASE_URL": "postgres://x@db.invalid/x",
    }
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "SECRET_KEY must be set" in completed.stderr


def test_sqlite_is_refused():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": "sqlite:///x.db"}
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "supports PostgreSQL only" in completed.stderr
