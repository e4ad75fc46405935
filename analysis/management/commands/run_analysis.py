import datetime as dt
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analysis.models import AnalysisRun
from analysis.services import AnalysisRequestError, analysis_run_execute, analysis_run_request, run_folder
from trials.models import Role, Trial, TrialMembership


class Command(BaseCommand):
    help = (
        "Request an interim or final analysis of a trial. Without --sync the run is queued for a Celery worker and "
        "its id printed; with --sync it runs in this process. --out DIR copies the artifacts there: results.json, "
        "datasets/*.csv and, for an interim run, open/ and closed/ reports; for a final run report.pdf, "
        "report.xlsx and tables.zip."
    )

    def add_arguments(self, parser):
        parser.add_argument("protocol_code")
        parser.add_argument("--kind", choices=AnalysisRun.Kind.values, required=True)
        parser.add_argument("--cutoff", type=dt.date.fromisoformat, help="Data cut-off, YYYY-MM-DD (default today).")
        parser.add_argument("--sync", action="store_true", help="Run in this process instead of a worker.")
        parser.add_argument("--out", type=Path, help="Copy the artifacts into this folder (implies waiting).")
        parser.add_argument("--user", help="Unblinded statistician requesting the run (default: the trial's first).")

    def handle(self, *args, protocol_code, kind, cutoff, sync, out, user, **options):
        trial = Trial.objects.filter(protocol_code=protocol_code).first()
        if trial is None:
            raise CommandError(f"No trial {protocol_code!r}.")
        members = TrialMembership.objects.filter(trial=trial, role=Role.UNBLINDED_STATISTICIAN, is_active=True)
        membership = (members.filter(user__username=user) if user else members.order_by("pk")).first()
        if membership is None:
            raise CommandError("No unblinded statistician to request the run: give --user USERNAME of one.")
        if out is not None and not sync:
            raise CommandError("--out needs --sync (the artifacts must exist before they can be copied).")
        try:
            run = analysis_run_request(trial=trial, user=membership.user, kind=kind, cutoff=cutoff)
        except AnalysisRequestError as error:
            raise CommandError(error.message) from error
        if not sync:
            self.stdout.write(f"Queued analysis run {run.pk}: {run}")
            return
        run = analysis_run_execute(run_id=run.pk)
        self.stdout.write(self.style.SUCCESS(f"Run {run.pk} {run.status}: {run}"))
        recommendation = run.results.get("monitoring", {}).get("recommendation")
        if recommendation:
            self.stdout.write(f"Monitoring recommendation: {recommendation}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copytree(run_folder(run), out, dirs_exist_ok=True)
            self.stdout.write(f"Artifacts copied to {out}")
