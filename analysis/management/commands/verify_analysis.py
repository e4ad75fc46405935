from django.core.management.base import BaseCommand, CommandError

from analysis.models import AnalysisRun
from analysis.services import analysis_run_verify


class Command(BaseCommand):
    help = "Recompute a run's results.json from its frozen datasets and check every artifact's SHA-256."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id, **options):
        run = AnalysisRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"No analysis run {run_id}.")
        ok, problems = analysis_run_verify(run=run)
        if not ok:
            raise CommandError("Verification failed: " + "; ".join(problems))
        self.stdout.write(self.style.SUCCESS(f"Run {run_id} verified: results reproduced and artifacts intact."))
