from django.core.management.base import BaseCommand, CommandError

from jobs.audit import discrepancies


class Command(BaseCommand):
    help = "Check that every balance equals its ledger and every finished job was charged or released once."

    def handle(self, *args, **options):
        found = 0
        for line in discrepancies():
            found += 1
            self.stderr.write(line)
        if found:
            raise CommandError(f"{found} discrepanc{'y' if found == 1 else 'ies'} found.")
        self.stdout.write("The ledger is consistent.")
