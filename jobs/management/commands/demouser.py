"""Creates the demo account on first run and prints its login every run."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from jobs import demo, ledger


class Command(BaseCommand):
    help = "Create the demo account if it is missing and print its login."

    def handle(self, *args, **options):
        login_file = demo.login_file()
        User = get_user_model()
        user = User.objects.filter(username=demo.USERNAME).first()
        if user is None or not login_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = User(username=demo.USERNAME, email="demo@example.com")
            user.set_password(password)
            user.save()
            ledger.open_account(user)
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            login_file.write_text(f"{demo.USERNAME} {password}\n")
            login_file.chmod(0o600)
        username, password = login_file.read_text().split()
        balance = ledger.balance_of(user)
        self.stdout.write(
            self.style.SUCCESS(f"Demo login: username {username}  password {password}  ({balance} credits)")
        )
