from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.exceptions import ApplicationError
from trials.models import Role, Trial
from trials.services import membership_grant


class Command(BaseCommand):
    help = (
        "Give a user a role in a trial (audited). This is how an installation administrator appoints a trial's "
        "first coordinator; coordinators then manage memberships in the admin. Roles: " + ", ".join(Role.values)
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("protocol_code")
        parser.add_argument("role", choices=Role.values)
        parser.add_argument("--site", action="append", default=[], help="Site code (repeat for several sites).")
        parser.add_argument("--reason", default="role granted by the installation administrator")
        parser.add_argument("--staff", action="store_true", help="Also allow the user into the admin (coordinators).")

    def handle(self, *args, username, protocol_code, role, site, reason, staff, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}; create it first (manage.py createuser or the admin).")
        trial = Trial.objects.filter(protocol_code=protocol_code).first()
        if trial is None:
            raise CommandError(f"No trial {protocol_code!r}.")
        try:
            membership = membership_grant(
                trial=trial, user=user, role=role, site_codes=site, granted_by=None, reason=reason
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        if staff and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        self.stdout.write(self.style.SUCCESS(f"{user} is now {membership.get_role_display()} in {trial}."))
