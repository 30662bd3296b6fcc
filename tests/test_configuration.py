"""Settings: read in one place, documented in .env.example, strict about values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import wait_until

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = (ROOT / "i2v_site" / "settings.py").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()


def bare_environment(tmp_path, **env) -> dict[str, str]:
    """The environment of a fresh install in ``tmp_path`` with only these variables set."""
    base = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    base.update({"I2V_VAR_DIR": str(tmp_path), "I2V_ENV_FILE": str(tmp_path / "none.env")}, **env)
    return base


def boot(tmp_path, **env) -> subprocess.CompletedProcess:
    """Start Django in a fresh process with only these variables set."""
    base = bare_environment(tmp_path, **env)
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='i2v_site.settings'; django.setup(); print('ok')"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60)


def test_every_variable_the_settings_read_is_documented_in_env_example():
    read = set(re.findall(r'env_(?:str|bool|int|float|url)\(\s*"([A-Z_0-9]+)"', SETTINGS))
    read |= set(re.findall(r'_read\(\s*"([A-Z_0-9]+)"', SETTINGS))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z_0-9]+)=", EXAMPLE, re.MULTILINE))
    assert read, "the pattern found no variables"
    assert read - documented == set()


@pytest.mark.parametrize(
    "name",
    [
        "PIKAPI_BEARER_TOKEN",
        "REPLICATE_API_TOKEN",
        "GAME_API_KEY",
        "PIKAPI_BASE_URL",
        "REPLICATE_MODEL_ID",
        "CALLBACK_API_URL",
        "MAX_CHECK_TIME",
        "INITIAL_WAIT_TIME",
        "STABILITY_API_KEY",
    ],
)
def test_the_original_apis_variables_are_documented(name):
    assert re.search(rf"^#?\s*{name}=", EXAMPLE, re.MULTILINE)


def test_defaults_start_with_nothing_configured(tmp_path):
    result = boot(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CHECK_TIME", "ten minutes"),
        ("DEBUG", "maybe"),
        ("Q_WORKERS", "0"),
        ("STABILITY_BASE_URL", "ftp://example"),
        ("DATABASE_URL", "nonsense://"),
        ("STABILITY_POLL_INTERVAL", "-1"),
        ("CACHE_URL", "bogus://"),
        ("CACHE_URL", "locmemcache://"),  # not shared between web processes
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    result = boot(tmp_path, **{name: value})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert name in last_line


def test_a_dotenv_file_is_read(tmp_path):
    env_file = tmp_path / "custom.env"
    env_file.write_text("MAX_CHECK_TIME=oops\n")
    result = boot(tmp_path, I2V_ENV_FILE=str(env_file))
    assert result.returncode != 0
    assert "MAX_CHECK_TIME" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "missing"),
    [
        ("CACHE_URL", "redis://127.0.0.1:6379/0", "redis"),
        ("Q_BROKER_URL", "redis://127.0.0.1:6379/0", "redis"),
        ("AWS_STORAGE_BUCKET_NAME", "i2v-media", "storages"),
        ("AWS_STORAGE_BUCKET_NAME", "i2v-media", "boto3"),
    ],
)
def test_a_backend_whose_package_is_missing_stops_start_up_naming_the_variable(tmp_path, name, value, missing):
    # A package of that name that cannot be imported, first on the path: as if not installed.
    # (CACHE_URL=redis://... was once accepted without the client, then every API call was a 500.)
    shadow = tmp_path / "shadow" / missing
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError('No module named {missing}')\n")

    result = boot(tmp_path, **{name: value, "PYTHONPATH": str(shadow.parent)})

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert name in last_line and "install" in last_line, last_line


def test_the_scale_settings_configure_redis_and_s3(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='i2v_site.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.Q_CLUSTER.get('redis'), 'orm' in s.Q_CLUSTER, s.CACHES['default']['BACKEND'],"
        " s.STORAGES['default']['BACKEND'], s.AWS_S3_ENDPOINT_URL, s.AWS_S3_ADDRESSING_STYLE)"
    )
    env = bare_environment(
        tmp_path,
        Q_BROKER_URL="redis://10.0.0.5:6379/1",
        CACHE_URL="redis://10.0.0.5:6379/2",
        AWS_STORAGE_BUCKET_NAME="i2v-media",
        AWS_S3_ENDPOINT_URL="http://10.0.0.6:9000",
        AWS_S3_ADDRESSING_STYLE="path",
    )
    # Nothing listens at those addresses: settings need no server, serve checks them.
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "redis://10.0.0.5:6379/1",
        "False",
        "django.core.cache.backends.redis.RedisCache",
        "storages.backends.s3.S3Storage",
        "http://10.0.0.6:9000",
        "path",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("Q_BROKER_URL", "http://127.0.0.1:6379/0"), ("AWS_S3_ADDRESSING_STYLE", "sideways")],
)
def test_a_malformed_scale_setting_stops_start_up_naming_it(tmp_path, name, value):
    extra = {"AWS_STORAGE_BUCKET_NAME": "i2v-media"} if name.startswith("AWS_") else {}
    result = boot(tmp_path, **{name: value, **extra})
    assert result.returncode != 0
    assert name in result.stderr.strip().splitlines()[-1]


def database_settings(tmp_path, url: str) -> subprocess.CompletedProcess:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='i2v_site.settings'; django.setup();"
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d['OPTIONS'].get('prepared_statements', '-'))"
    )
    env = bare_environment(tmp_path, DATABASE_URL=url)
    # Nothing needs to listen there: settings open no connection.
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://i2v@10.0.0.10:5432/i2v", ["60", "True", "True"]),
        ("postgres://i2v@10.0.0.10:5432/i2v?conn_max_age=0", ["0", "True", "True"]),
        ("postgres://i2v@10.0.0.10:5432/i2v?conn_max_age=300&conn_health_checks=false", ["300", "False", "True"]),
        ("postgres://i2v@10.0.0.10:5432/i2v?conn_max_age=0&prepared_statements=false", ["0", "True", "False"]),
        ("sqlite:///{tmp}/db.sqlite3", ["60", "True", "-"]),
        ("sqlite:///{tmp}/db.sqlite3?conn_max_age=0", ["0", "True", "-"]),
    ],
)
def test_connections_are_kept_a_minute_checked_and_prepare_unless_the_url_says_otherwise(tmp_path, url, expected):
    result = database_settings(tmp_path, url.format(tmp=tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


@pytest.mark.parametrize("option", ["conn_max_age=a-minute", "conn_health_checks=maybe", "prepared_statements=maybe"])
def test_a_malformed_connection_option_stops_start_up_naming_database_url(tmp_path, option):
    result = database_settings(tmp_path, f"postgres://i2v@10.0.0.10:5432/i2v?{option}")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "DATABASE_URL" in last_line
    assert option in last_line.replace("'", "")


def test_processes_started_together_on_a_fresh_checkout_share_one_secret_key(tmp_path):
    # CI starts its runs together; one of them once read the key file that
    # another had created and not yet written. Here the first process is slow
    # to write its key, and a second starts meanwhile.
    code = (
        "import os, sys, time\n"
        "if sys.argv[1] == 'slow':\n"
        "    real_fdopen = os.fdopen\n"
        "    def slow_fdopen(*args, **kwargs):\n"
        "        handle = real_fdopen(*args, **kwargs)\n"
        "        time.sleep(3)\n"
        "        return handle\n"
        "    os.fdopen = slow_fdopen\n"
        "import django; os.environ['DJANGO_SETTINGS_MODULE'] = 'i2v_site.settings'; django.setup()\n"
        "from django.conf import settings; print(settings.SECRET_KEY)\n"
    )
    base = bare_environment(tmp_path)

    def start(speed: str) -> subprocess.Popen:
        command = [sys.executable, "-c", code, speed]
        return subprocess.Popen(command, cwd=ROOT, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    slow = start("slow")
    wait_until(lambda: [p for p in tmp_path.iterdir() if "secret" in p.name], 60, "no key file was started")
    procs = [slow, start("quick")]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    keys = {out.strip() for out, _ in outputs}
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert sorted(p.name for p in tmp_path.iterdir() if "secret" in p.name) == ["secret_key"]


def test_an_empty_secret_key_file_stops_start_up_saying_what_to_do(tmp_path):
    (tmp_path / "secret_key").write_text("")
    result = boot(tmp_path)
    assert result.returncode != 0
    assert "secret_key is empty: delete it" in result.stderr
