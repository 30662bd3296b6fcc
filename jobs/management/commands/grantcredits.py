from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs import ledger


class Command(BaseCommand):
    help = "Grant credits to a user, with a reason kept in the ledger."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("amount", type=int)
        parser.add_argument("--reason", required=True, help="Why; shown in the user's ledger.")

    def handle(self, *args, username: str, amount: int, reason: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            entry = ledger.grant(user=user, amount=amount, reason=reason)
        except ledger.LedgerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Granted {amount} credits to {username}; balance is now {entry.balance_after}.")
