"""Export a trial's participant data as CSV, XLSX, CDISC ODM 1.3.2 or SDTM (XPT v5 + CSV + define.csv).

The export is made as a named user (``--user``, required) so that it is attributable and sees exactly what
that user sees in the application: their sites only for site roles, and every allocation-revealing field
masked unless the user may see the allocation. Each run is logged (who, what, where) on the
``exotrial.exports`` logger.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from participants.exchange.exports import write_csv_export, write_xlsx_export
from participants.exchange.odm import write_odm
from participants.exchange.sdtm import write_sdtm
from trials.models import Trial
from trials.policies.blinding import sees_allocation

logger = logging.getLogger("exotrial.exports")

FORMATS = ("csv", "xlsx", "odm", "sdtm")


class Command(BaseCommand):
    help = (
        "Export a trial's participant data as the given user sees it: csv (one file per table and "
        "data_dictionary.csv), xlsx (one workbook), odm (CDISC ODM 1.3.2 snapshot) or sdtm (DM, DS, EX, AE, QS "
        "as SAS XPORT v5 and CSV, plus define.csv)."
    )

    def add_arguments(self, parser):
        parser.add_argument("protocol_code")
        parser.add_argument("--format", choices=FORMATS, required=True, dest="export_format")
        parser.add_argument("--out", type=Path, required=True, help="Folder to write into (created if missing).")
        parser.add_argument(
            "--user",
            required=True,
            help="Username the export is made as; their role decides the sites and the blinding of the export.",
        )

    def handle(self, *args, protocol_code, export_format, out, user, **options):
        trial = Trial.objects.filter(protocol_code=protocol_code).first()
        if trial is None:
            raise CommandError(f"No trial {protocol_code!r}.")
        member = get_user_model().objects.filter(username=user, is_active=True).first()
        if member is None:
            raise CommandError(f"No active user {user!r}.")
        try:
            written = self._export(trial=trial, user=member, export_format=export_format, out=out)
        except PermissionDenied as error:
            raise CommandError(f"{user} may not export participant data of {protocol_code}: {error}") from error
        masked = not sees_allocation(member, trial)
        # No security-event module exists in the audit app; the log line keeps the export attributable.
        logger.info(
            "export %s of %s by %s (%s) to %s: %d files",
            export_format,
            protocol_code,
            member.get_username(),
            "allocation masked" if masked else "allocation visible",
            out,
            len(written),
        )
        for path in written:
            self.stdout.write(str(path))
        summary = f"Exported {protocol_code} as {export_format} for {member.get_username()}: {len(written)} file(s)"
        self.stdout.write(self.style.SUCCESS(summary + (" (allocation masked)." if masked else ".")))

    @staticmethod
    def _export(*, trial: Trial, user, export_format: str, out: Path) -> list[Path]:
        if export_format == "csv":
            return write_csv_export(trial=trial, user=user, out_dir=out)
        if export_format == "xlsx":
            return [write_xlsx_export(trial=trial, user=user, path=out / f"{trial.protocol_code}.xlsx")]
        if export_format == "odm":
            return [write_odm(trial=trial, user=user, path=out / f"{trial.protocol_code}-odm.xml")]
        return write_sdtm(trial=trial, user=user, out_dir=out)
