"""Recompute the audit hash chain; exit non-zero naming the first broken link or tampered event."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from audit.verification import DEFAULT_BATCH_SIZE, DEFAULT_MAX_FINDINGS, verify_audit_chain


class Command(BaseCommand):
    help = "Verify the tamper-evident hash chain over every audit event table (and the security event log)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Events read per query.")
        parser.add_argument(
            "--max-findings", type=int, default=DEFAULT_MAX_FINDINGS, help="Findings listed (all are counted)."
        )

    def handle(self, *args, batch_size: int, max_findings: int, **options) -> None:
        if batch_size < 1 or max_findings < 1:
            raise CommandError("--batch-size and --max-findings must be at least 1.")
        started = time.monotonic()
        result = verify_audit_chain(batch_size=batch_size, max_findings=max_findings)
        elapsed = time.monotonic() - started
        if result.ok:
            self.stdout.write(f"{result.summary()} ({elapsed:.1f} s)")
            return
        for finding in result.findings:
            self.stderr.write(finding.describe())
        raise CommandError(result.summary())
