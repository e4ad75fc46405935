from django.core.management.base import BaseCommand

from trials import demo


class Command(BaseCommand):
    help = (
        f"Create the demo trial {demo.PROTOCOL_CODE} (3 arms, 4 sites, 5 visits, 3 product lots, "
        f"{demo.TARGET_RANDOMIZED} participants randomized by stratified permuted blocks) with synthetic data "
        "whose true effect is known: mean change from baseline in WOMAC pain at week 12 is "
        f"{demo.TRUE_WEEK12_CHANGE['PBO']:g} (placebo), {demo.TRUE_WEEK12_CHANGE['LOW']:g} (low dose) and "
        f"{demo.TRUE_WEEK12_CHANGE['HIGH']:g} (high dose) points, i.e. effects {demo.TRUE_EFFECT['LOW']:g} and "
        f"{demo.TRUE_EFFECT['HIGH']:g} versus placebo; participants with high baseline serum exosomal miR-140-3p "
        "benefit 1.4×, low 0.6×. Idempotent: an existing demo trial is left as it is; the demo logins "
        "(one per role) get their password reset."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--seed",
            type=int,
            default=demo.DEFAULT_SEED,
            help=f"Random seed; the same seed gives the same data (default {demo.DEFAULT_SEED}).",
        )
        parser.add_argument("--password", help="Password for every demo login (default: generate and print).")

    def handle(self, *args, seed: int, password: str | None, **options):
        result = demo.seed_demo(seed=seed, password=password)
        if result.created:
            self.stdout.write(self.style.SUCCESS(f"Created demo trial {result.trial} (seed {seed})."))
        else:
            self.stdout.write(f"Demo trial {result.trial} already exists; its data were left unchanged.")
        for name, count in result.counts.items():
            self.stdout.write(f"  {name:<24} {count:>6}")
        self.stdout.write("Demo logins:")
        for username, role, secret in result.logins:
            self.stdout.write(f"  {username:<22} {secret:<20} {role}")
