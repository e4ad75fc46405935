from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from participants.exchange.imports import COLUMNS, REQUIRED_COLUMNS, format_errors, import_outcomes
from participants.models import ImportJob
from trials.models import Trial


class Command(BaseCommand):
    help = (
        "Import outcome measurements of a trial from a CSV (UTF-8) or XLSX file, all rows or none. Checks only "
        "(a dry run) unless --commit is given. Columns: "
        + ", ".join(name if name in REQUIRED_COLUMNS else f"[{name}]" for name in COLUMNS)
        + " (see participants/exchange/imports.py). Exits non-zero when the file is invalid or the import failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("protocol_code", metavar="PROTOCOL")
        parser.add_argument("file", metavar="FILE", type=Path)
        parser.add_argument(
            "--user", required=True, help="Username of the importer: site staff of the participants' sites."
        )
        parser.add_argument("--commit", action="store_true", help="Import the rows (default: only check them).")
        parser.add_argument("--show-errors", type=int, default=50, metavar="N", help="Errors to print (default 50).")

    def handle(self, *args, protocol_code, file, user, commit, show_errors, **options):
        importer = get_user_model().objects.filter(username=user).first()
        if importer is None:
            raise CommandError(f"No user {user!r}.")
        trial = Trial.objects.filter(protocol_code=protocol_code).first()
        if trial is None:
            raise CommandError(f"No trial {protocol_code!r}.")
        if not file.is_file():
            raise CommandError(f"No file {file}.")
        try:
            job = import_outcomes(trial=trial, user=importer, path=file, file_name=file.name, dry_run=not commit)
        except PermissionDenied as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Import job {job.pk}: {job.get_status_display()}")
        self.stdout.write(f"  rows in file:     {job.rows_total}")
        self.stdout.write(f"  rows imported:    {job.rows_imported}")
        self.stdout.write(f"  rows unchanged:   {job.rows_unchanged}")
        self.stdout.write(f"  errors:           {job.error_count}")
        if job.message:
            self.stdout.write(job.message)
        for line in format_errors(job.errors, limit=show_errors):
            self.stdout.write(f"  {line}")
        if job.error_count > min(show_errors, len(job.errors)):
            self.stdout.write(
                f"  … {job.error_count - min(show_errors, len(job.errors))} more (see import job {job.pk})."
            )
        if job.status == ImportJob.Status.INVALID:
            raise CommandError(f"The file is invalid ({job.error_count} error(s)); nothing was imported.")
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(f"The import failed; nothing was imported. {job.message}")
        if job.status == ImportJob.Status.VALID:
            self.stdout.write(self.style.SUCCESS("Dry run: the file is valid; nothing was written. Use --commit."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {job.rows_imported} rows."))
