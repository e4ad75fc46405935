"""System check audit.E001: the audit triggers the code declares are installed, enabled and unaltered.

Compares the model registry (pghistory trackers, pgtrigger declarations) with ``pg_trigger``, so an audit
trigger dropped, disabled or replaced by hand is reported by table.

Registered as a database, deployment check (``manage.py check --deploy --database default``) because it needs
a reachable, migrated database: as an ordinary database check it would also run inside ``migrate`` and refuse
to migrate a fresh database, whose triggers do not exist yet. The daily ``audit.verify_audit_trail`` task runs
the same comparison, so a trigger removed after deployment is reported within a day.
"""

from __future__ import annotations

from dataclasses import dataclass

import pgtrigger
from django.core import checks
from django.db import connections
from pghistory.models import Event

from audit.chain import CANONICAL_SETTINGS, CHAIN_FUNCTION, CHAIN_FUNCTION_SQL, TruncateProtectTrigger
from audit.models import AuditChainLink, SecurityEvent

HISTORY_TRIGGERS = ("insert_insert", "update_update", "delete_delete")
REASON_TRIGGERS = ("require_reason_update", "require_reason_delete")
EVENT_TABLE_TRIGGERS = ("append_only", TruncateProtectTrigger.name, "audit_chain")
CHAIN_TABLE_TRIGGERS = ("append_only", TruncateProtectTrigger.name)


@dataclass(frozen=True)
class TriggerProblem:
    table: str
    message: str


def audited_models() -> list[tuple[type, type]]:
    """(tracked model, its pghistory event model) for every audited model."""
    from django.apps import apps

    return [
        (model.pgh_tracked_model, model)
        for model in apps.get_models()
        if issubclass(model, Event) and getattr(model, "pgh_tracked_model", None) is not None
    ]


def required_triggers() -> dict[type, tuple[str, ...]]:
    """The audit triggers each model must carry, by model."""
    required: dict[type, tuple[str, ...]] = {AuditChainLink: CHAIN_TABLE_TRIGGERS, SecurityEvent: EVENT_TABLE_TRIGGERS}
    for tracked, event_model in audited_models():
        required[tracked] = HISTORY_TRIGGERS + REASON_TRIGGERS
        required[event_model] = EVENT_TABLE_TRIGGERS
    return required


def audit_trigger_problems(using: str = "default") -> list[TriggerProblem]:
    """Every missing, disabled or altered audit trigger, and an altered chain function."""
    required = required_triggers()
    declared = {(model, trigger.name): trigger for model, trigger in pgtrigger.registered()}
    installed = _installed_triggers(using, [model._meta.db_table for model in required])
    problems = []
    for model, names in sorted(required.items(), key=lambda item: item[0]._meta.db_table):
        table = model._meta.db_table
        for name in names:
            trigger = declared.get((model, name))
            if trigger is None:
                problems.append(TriggerProblem(table, f"the model declares no {name!r} trigger"))
                continue
            state = installed.get((table, trigger.get_pgid(model)))
            if state is None:
                problems.append(TriggerProblem(table, f"trigger {name!r} is not installed"))
            elif state[0] == "D":
                problems.append(TriggerProblem(table, f"trigger {name!r} is disabled"))
            elif state[1] != trigger.compile(model).hash:
                problems.append(TriggerProblem(table, f"trigger {name!r} differs from its declaration"))
    problems.extend(_chain_function_problems(using))
    return problems


def _installed_triggers(using: str, tables: list[str]) -> dict[tuple[str, str], tuple[str, str | None]]:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname, t.tgenabled, obj_description(t.oid, 'pg_trigger') "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relname = ANY(%s) AND pg_table_is_visible(c.oid)",
            [tables],
        )
        return {(table, name): (enabled, comment) for table, name, enabled, comment in cursor.fetchall()}


def _chain_function_problems(using: str) -> list[TriggerProblem]:
    expected_body = CHAIN_FUNCTION_SQL.split("$$")[1]
    expected_config = sorted(f"{name}={value}".lower() for name, value in CANONICAL_SETTINGS)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT prosrc, proconfig FROM pg_proc WHERE proname = %s AND pg_function_is_visible(oid)",
            [CHAIN_FUNCTION],
        )
        row = cursor.fetchone()
    if row is None:
        return [TriggerProblem(CHAIN_FUNCTION, "the chain function is not installed")]
    body, config = row
    if body != expected_body or sorted(item.lower() for item in config or []) != expected_config:
        return [TriggerProblem(CHAIN_FUNCTION, "the chain function differs from audit.chain.CHAIN_FUNCTION_SQL")]
    return []


@checks.register(checks.Tags.database, deploy=True)
def check_audit_triggers(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            f"Audit protection missing on {problem.table}: {problem.message}.",
            hint="Run `manage.py migrate`; audit triggers must never be dropped or disabled (R5).",
            obj=problem.table,
            id="audit.E001",
        )
        for alias in databases or []
        for problem in audit_trigger_problems(alias)
    ]
