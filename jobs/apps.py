from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Video jobs"

    def ready(self) -> None:
        from django.core import checks

        from jobs.service_checks import services_answer

        # Only with --deploy: an ordinary check (and every test run) needs no servers.
        checks.register(services_answer, "i2v", deploy=True)
