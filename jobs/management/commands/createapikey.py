from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.apikeys import create_api_key


class Command(BaseCommand):
    help = "Create an API key for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created by createapikey")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        key, full = create_api_key(user=user, name=name)
        self.stderr.write(f"API key {key.prefix} for {username} (send as 'Authorization: Bearer <key>'):")
        self.stdout.write(full)
