"""The benchmark database (``DATABASES["default"]`` of ``benchmarks.settings``): dropped and created through a
connection to the same server's ``postgres`` database, since a database cannot be dropped from inside itself."""

from __future__ import annotations


def _maintenance_connection():
    """An autocommit connection to the ``postgres`` database of the configured server."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database["HOST"] or None,
        port=database["PORT"] or None,
        user=database["USER"] or None,
        password=database.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def drop_database() -> None:
    """Drop the benchmark database if it exists, ending the sessions still on it (ours are closed first)."""
    from django.conf import settings
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    with _maintenance_connection() as admin:
        name = sql.Identifier(settings.DATABASES["default"]["NAME"])
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def recreate_database() -> None:
    """An empty benchmark database (to be migrated), whatever was there before."""
    from django.conf import settings
    from psycopg import sql

    drop_database()
    with _maintenance_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.DATABASES["default"]["NAME"])))
