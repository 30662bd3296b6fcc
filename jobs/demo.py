"""The demo account that ``make run`` creates (``manage.py demouser``).

The login page mentions it only when it is there to be used: the command has
written its login file on this install and the account still exists and is
active. A production install never runs ``demouser``, so it never shows the
hint; a local one shows it from the first ``make run`` on. (``DEBUG`` would be
the wrong test: ``make run`` runs with ``DEBUG`` off.)
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

USERNAME = "demo"


def login_file() -> Path:
    return settings.VAR_DIR / "demo-login.txt"


def demo_login_available() -> bool:
    """Whether ``demouser`` made the demo login here and it still works as printed."""
    if not login_file().exists():
        return False
    return get_user_model().objects.filter(username=USERNAME, is_active=True).exists()
