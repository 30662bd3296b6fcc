"""All settings, read from the environment (and an optional ``.env``) here only.

Every variable is documented in ``.env.example``. A malformed value stops
start-up with ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = os.environ.get("I2V_ENV_FILE", str(BASE_DIR / ".env"))
if os.path.isfile(_env_file):
    env.read_env(_env_file)


def _read(name: str, cast, default):
    """Read one variable; a malformed value names the variable and the problem."""
    try:
        return cast(name, default=default)
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # environ raises ValueError and friends
        raise ImproperlyConfigured(
            f"Environment variable {name}={os.environ.get(name)!r} is malformed: {exc}"
        ) from None


def env_str(name: str, default: str = "") -> str:
    return _read(name, env.str, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is not None and raw.strip().lower() not in {
        "1",
        "0",
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "",
    }:
        raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is malformed: expected true or false")
    return _read(name, env.bool, default)


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = _read(name, env.int, default)
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} is malformed: must be at least {minimum}")
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    value = _read(name, env.float, default)
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} is malformed: must be at least {minimum}")
    return value


def env_seconds_list(name: str, default: list[float]) -> list[float]:
    """A comma-separated list of seconds, each a number of at least 0."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return list(default)
    try:
        values = [float(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        values = [-1.0]
    if any(not 0 <= value < float("inf") for value in values):
        raise ImproperlyConfigured(
            f"Environment variable {name}={raw!r} is malformed: expected seconds separated by commas, e.g. 10,60,300"
        )
    return values


def require_module(name: str, module: str, what: str) -> None:
    """Stop start-up, naming the variable, when what it configures cannot load.

    Checked here rather than at first use: a cache backend whose client
    library is missing was accepted at start and then failed every request.
    """
    import importlib

    try:
        importlib.import_module(module)
    except (ImportError, ImproperlyConfigured) as exc:  # django-storages wraps a missing boto3 so
        raise ImproperlyConfigured(
            f"Environment variable {name}={os.environ.get(name)!r} needs {what}, "
            f"but the Python package {module!r} cannot be imported ({exc}); install it or unset {name}"
        ) from None


def env_url(name: str, default: str) -> str:
    value = env_str(name, default)
    if value:
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ImproperlyConfigured(f"Environment variable {name}={value!r} is malformed: expected an http(s) URL")
    return value.rstrip("/")


# --- Core -------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
VAR_DIR = Path(env_str("I2V_VAR_DIR", str(BASE_DIR / "var")))


def _local_secret_key() -> str:
    """A random key kept in VAR_DIR, so a fresh checkout runs with nothing to set
    and never with a key that is published in the code."""
    import secrets

    path = VAR_DIR / "secret_key"
    if not path.exists():
        # Written whole under another name, then linked into place: processes
        # started together (CI's runs, serve's web and worker) all read the one
        # key that won, and none reads the file while it is still empty.
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        draft = VAR_DIR / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:  # another process's key is in place first
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it and a new key is made, or set SECRET_KEY.")
    return key


SECRET_KEY = env_str("SECRET_KEY", "") or _local_secret_key()
ALLOWED_HOSTS = _read("ALLOWED_HOSTS", env.list, ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, [])
# The install's public address (https://i2v.example.com). Providers that fetch the
# image by URL (Pika, Kling) get signed links under it, and callbacks carry
# absolute links under it. Empty: callbacks use the host the request came in on,
# and such providers can take only jobs made from an image URL.
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", "")
# Requests per client address per period to the provider webhook endpoints
# (/hooks/...): generous, since one provider address may report many jobs at once.
PROVIDER_WEBHOOK_RATE = env_str("PROVIDER_WEBHOOK_RATE", "1200/minute")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "jobs.middleware.ApiBodyLimitMiddleware",
    "jobs.middleware.DatabaseOutageMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "i2v_site.urls"
WSGI_APPLICATION = "i2v_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jobs.context_processors.credits",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------


def _url_flag(value, name: str) -> bool:
    """A true/false option of DATABASE_URL (django-environ leaves it a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
        raise ImproperlyConfigured(
            f"Environment variable DATABASE_URL={os.environ.get('DATABASE_URL')!r} is malformed: "
            f"{name}={value!r}, expected true or false"
        )
    return text in {"1", "true", "yes", "on"}


def _url_seconds(value) -> int:
    """DATABASE_URL's conn_max_age: whole seconds, 0 for a connection per request."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds < 0:
        raise ImproperlyConfigured(
            f"Environment variable DATABASE_URL={os.environ.get('DATABASE_URL')!r} is malformed: "
            f"conn_max_age={value!r}, expected whole seconds (0 or more)"
        )
    return seconds


DATABASES = {"default": _read("DATABASE_URL", env.db_url, f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"].get("ENGINE") not in {
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
}:
    raise ImproperlyConfigured(
        f"Environment variable DATABASE_URL={os.environ.get('DATABASE_URL')!r} is malformed: "
        "expected sqlite:///path or postgres://user@host:port/name"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's own, with a health check of kept connections that sends nothing
    # unless the server has spoken (i2v_site/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "i2v_site.postgresql"
    # ...and the hottest reads as prepared statements, unless ?prepared_statements=false
    # (behind a connection pooler in transaction mode, which cannot keep them).
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["prepared_statements"] = _url_flag(options.get("prepared_statements", True), "prepared_statements")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL with synchronous=NORMAL made the ORM broker ~5x faster here, and a
    # busy timeout lets the web process and the worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so a test can share its database with a real worker.
    # One file per test run, so two runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
# Connections are kept 60 s: a new one per request or task made a PostgreSQL
# status poll 2.7x slower (bench/RESULTS.md, the hot read), and on SQLite
# opening one (the file, its schema, the pragmas) was 2 of the 7 ms from a
# job's creation to its first step on an idle worker (bench/RESULTS.md, enqueue
# to start). Kept connections are checked before each request's or task's first
# query, so one broken by an outage or a restart is replaced, not handed out.
# Overridable in the URL: …?conn_max_age=0 (a connection per request) or
# ?conn_health_checks=false.
DATABASES["default"]["CONN_MAX_AGE"] = _url_seconds(DATABASES["default"].get("CONN_MAX_AGE", 60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = _url_flag(
    DATABASES["default"].get("CONN_HEALTH_CHECKS", True), "conn_health_checks"
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Scratch space for a job's files while it runs (always local disk).
WORK_DIR = Path(env_str("WORK_DIR", str(VAR_DIR / "work")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# S3-compatible storage (django-storages, under its own setting names): set the
# bucket and uploads, videos and posters live there instead of MEDIA_ROOT.
# Links to them are the storage's presigned URLs, handed out (as a redirect)
# only after our own signed link and permissions are checked.
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    require_module("AWS_STORAGE_BUCKET_NAME", "storages.backends.s3", "django-storages with boto3")
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}
    # Empty: AWS itself. For MinIO, moto, Ceph...: http(s)://host:port
    AWS_S3_ENDPOINT_URL = env_url("AWS_S3_ENDPOINT_URL", "") or None
    # Empty: boto3's own chain (instance role, ~/.aws, AWS_* variables).
    AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID", "") or None
    AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY", "") or None
    AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "") or None
    AWS_S3_ADDRESSING_STYLE = env_str("AWS_S3_ADDRESSING_STYLE", "") or None
    if AWS_S3_ADDRESSING_STYLE not in {None, "auto", "path", "virtual"}:
        raise ImproperlyConfigured(
            f"Environment variable AWS_S3_ADDRESSING_STYLE={AWS_S3_ADDRESSING_STYLE!r} is malformed: "
            "expected path, virtual or auto"
        )
    AWS_S3_SIGNATURE_VERSION = "s3v4"
    # A prefix inside the bucket, so several installs can share one.
    AWS_LOCATION = env_str("AWS_LOCATION", "")
    # Seconds a presigned URL works once one of our links redirected to it; a
    # player keeps using it for its range requests while the video plays.
    AWS_QUERYSTRING_EXPIRE = env_int("AWS_QUERYSTRING_EXPIRE", 3600, minimum=10)
    AWS_QUERYSTRING_AUTH = True
    AWS_DEFAULT_ACL = None  # private: nothing is readable without a presigned URL
    # Never overwrite: a name taken gets a suffix, as on the local disk.
    AWS_S3_FILE_OVERWRITE = False
    # A file read from the bucket is buffered in a temporary file that spills to
    # disk past this size: django-storages' default (0) keeps the whole object in
    # memory, and a streamed 30 MB result would hold all of it.
    AWS_S3_MAX_MEMORY_SIZE = 1024 * 1024
    # ...and fetched a piece at a time, in this thread: boto3's default transfer
    # holds several 8 MB parts in memory at once on its own threads.
    from boto3.s3.transfer import TransferConfig

    AWS_S3_TRANSFER_CONFIG = TransferConfig(use_threads=False, multipart_chunksize=1024 * 1024, io_chunksize=256 * 1024)
# Uploads larger than the image cap are refused before they are parsed.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
# A base64 image is 4/3 of its bytes; the rest of a request is small.
MAX_API_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_API_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
RESULT_RETENTION_HOURS = env_int("RESULT_RETENTION_HOURS", 24, minimum=1)

# --- Jobs and the worker ----------------------------------------------------

# Seconds a provider job may run before it is failed as timed out (the
# original I2V API's name and default).
MAX_CHECK_TIME = env_int("MAX_CHECK_TIME", 420, minimum=1)
# Seconds to wait after submitting before the first poll (the original
# slept 300 s; a due time costs nothing, so ours starts at the poll floor).
INITIAL_WAIT_TIME = env_int("INITIAL_WAIT_TIME", 0, minimum=0)
# A step that has not finished in this many seconds is presumed dead.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 300, minimum=5)
# A job whose steps crashed this many times in a row is quarantined.
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 5, minimum=1)
# A job handed to the queue but not started within this many seconds is
# handed over again (a task lost with a dead Redis worker, say).
JOB_DISPATCH_GRACE = env_int("JOB_DISPATCH_GRACE", 60, minimum=1)
# How often the sweeper looks for due and stuck jobs.
SWEEP_INTERVAL = env_float("SWEEP_INTERVAL", 1.0, minimum=0.05)
DEFAULT_PROVIDER = env_str("DEFAULT_PROVIDER", "local")
# runworker replaces a cluster whose tasks (or results) have waited this many
# seconds with no sign of progress (a worker killed while waiting blocks the rest).
WORKER_STALL_SECONDS = env_float("WORKER_STALL_SECONDS", 10.0, minimum=2.0)
# Seconds a stopping cluster gets to finish its tasks before it is killed.
WORKER_STOP_GRACE = env_float("WORKER_STOP_GRACE", 10.0, minimum=1.0)

Q_CLUSTER = {
    "name": "i2v",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "orm": "default",
    # retry must exceed timeout, or a slow task runs twice while alive.
    "timeout": env_int("Q_TIMEOUT", 240, minimum=10),
    "retry": env_int("Q_RETRY", 300, minimum=15),
    "max_attempts": 0,
    "ack_failures": True,
    "catch_up": False,
    # Job rows are the record of work done; storing every successful task
    # cost the monitor ~28 ms per task (bench/RESULTS.md). Failures are kept.
    "save_limit": -1,
    # Seconds the ORM broker's pusher sleeps when it found no task: about half of
    # it is a new job's wait before it starts. 0.2 s: 88 ms p50, 197 ms p95, 1.6%
    # of a core while idle; 0.03 s: 24 / 38 ms, 5.7% (bench/bench_enqueue.py).
    # The Redis broker waits in BLPOP instead and starts a task at once.
    "poll": env_float("Q_POLL", 0.03, minimum=0.01),
    "sync": env_bool("Q_SYNC", False),
}
# redis://host:port/db: django-q2's Redis broker; unset: its ORM broker on DATABASE_URL.
# The Redis broker loses a task whose worker dies (acknowledging is a no-op);
# the sweeper hands such a job over again after JOB_DISPATCH_GRACE.
Q_BROKER_URL = env_str("Q_BROKER_URL", "")
if Q_BROKER_URL:
    if urlparse(Q_BROKER_URL).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            f"Environment variable Q_BROKER_URL={Q_BROKER_URL!r} is malformed: expected redis://host:port/db"
        )
    require_module("Q_BROKER_URL", "redis", "the Redis client")
    from redis.connection import parse_url as _parse_redis_url

    try:
        _parse_redis_url(Q_BROKER_URL)
    except ValueError as exc:
        raise ImproperlyConfigured(f"Environment variable Q_BROKER_URL={Q_BROKER_URL!r} is malformed: {exc}") from None
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = Q_BROKER_URL
if Q_CLUSTER["retry"] <= Q_CLUSTER["timeout"]:
    raise ImproperlyConfigured("Environment variable Q_RETRY must be larger than Q_TIMEOUT.")

# --- API ---

# Requests per user (all their API keys and their session together) per period.
API_RATE = env_str("API_RATE", "120/minute")
# Failed API key checks (wrong, unknown, revoked) per client address per period;
# past it, every key from that address is answered 429 until the period ends.
API_AUTH_FAILURE_RATE = env_str("API_AUTH_FAILURE_RATE", "20/minute")
# Proxies in front of the web server that append the client's address to
# X-Forwarded-For (0: none; the connection's address is the client's).
API_TRUSTED_PROXIES = env_int("API_TRUSTED_PROXIES", 0, minimum=0)
# Where the budgets are counted when the cache is not Redis or Memcached: one
# small locked file per user or address, shared by the web processes of one machine.
RATE_LIMIT_DIR = Path(env_str("RATE_LIMIT_DIR", str(VAR_DIR / "ratelimit")))


def _cache_config() -> dict:
    """The per-key request budgets live in this cache. Every web process (make
    run starts several) must share it, or each would grant the whole budget."""
    raw = os.environ.get("CACHE_URL")
    try:
        config = env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")
    except Exception as exc:  # environ says "Invalid cache schema" without naming the variable
        raise ImproperlyConfigured(f"Environment variable CACHE_URL={raw!r} is malformed: {exc}") from None
    if config["BACKEND"].endswith("LocMemCache"):
        raise ImproperlyConfigured(
            f"Environment variable CACHE_URL={raw!r} is malformed: a local-memory cache is not shared "
            "between web processes; use filecache:///path, dbcache://table or a shared cache server"
        )
    # The backend and its client library must load now, not at the first request.
    from django.utils.module_loading import import_string

    try:
        import_string(config["BACKEND"])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Environment variable CACHE_URL={raw!r} names a cache backend that cannot load: {exc}"
        ) from None
    for suffix, module, what in _CACHE_CLIENTS:
        if config["BACKEND"].endswith(suffix):
            require_module("CACHE_URL", module, what)
    return config


# Django imports these client libraries only when the cache is first used.
_CACHE_CLIENTS = (
    ("RedisCache", "redis", "the Redis client"),
    ("PyMemcacheCache", "pymemcache", "the pymemcache client"),
    ("PyLibMCCache", "pylibmc", "the pylibmc client"),
)


CACHES = {"default": _cache_config()}
# Seconds a signed link to a video or poster keeps working.
RESULT_LINK_SECONDS = env_int("RESULT_LINK_SECONDS", 3600, minimum=60)
# Seconds an Idempotency-Key is remembered.
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=60)
# Seconds a create with an Idempotency-Key holds the key; a request that died
# frees it after this (longer than any create runs: gunicorn's timeout is 60 s).
IDEMPOTENCY_LEASE_SECONDS = env_int("IDEMPOTENCY_LEASE_SECONDS", 90, minimum=1)
# The provider behind the Stability-compatible /api/img2video endpoints; empty
# means stability when STABILITY_API_KEY is set, else local.
COMPAT_PROVIDER = env_str("COMPAT_PROVIDER", "")
# Exact "ip:port" addresses that URL fetching may reach although they are not
# public: for tests and local demos only.
SAFE_FETCH_ALLOW = tuple(_read("SAFE_FETCH_ALLOW", env.list, []))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["jobs.api.auth.PerUserThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": API_RATE},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON everywhere (nesting bounded, so a deep body is a 400, not a RecursionError);
    # the endpoints that take files declare their parsers.
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "i2v API",
    "DESCRIPTION": "Turn a still image into a short video. Authenticate with `Authorization: Bearer <API key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A job's status and a webhook delivery's share a field name, not a meaning.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "jobs.models.Job.STATUS_CHOICES",
        "DeliveryStatusEnum": "jobs.models.CallbackDelivery.STATUS_CHOICES",
    },
    "TAGS": [
        {
            "name": "api",
            "description": "The native API: jobs from an upload, a URL or base64, their progress and results; "
            "the providers and what they take; credits and API keys; webhook endpoints and their deliveries. "
            "Errors are "
            '`{"error": {"status", "code", "message", "fields"}}`.',
        }
    ],
    # Setting the hooks replaces drf-spectacular's default list, so its enum hook stays first.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.compat_openapi.add_compat_endpoints",  # the Stability-compatible endpoints, two of them plain views
        "jobs.compat.i2v_openapi.add_i2v_endpoint",  # the I2V-compatible endpoint, in FastAPI's error shape
        "jobs.compat.queue_openapi.add_queue_endpoints",  # the queue-style API of Pipelet and fal clients
    ],
}

# --- Providers --------------------------------------------------------------

# The local provider's clip length and frame rate are each job's `duration` and
# `fps` parameters (providers/local.py: default 5 s at 24 fps). For demos and tests
# of long (or short) renders only: when LOCAL_FRAMES is set, every local clip is
# exactly LOCAL_FRAMES frames at LOCAL_FPS frames per second, whatever the job
# asked. 0 (the default) follows the job.
LOCAL_FRAMES = env_int("LOCAL_FRAMES", 0, minimum=0)
LOCAL_FPS = env_int("LOCAL_FPS", 12, minimum=1)

STABILITY_API_KEY = env_str("STABILITY_API_KEY", "")
STABILITY_BASE_URL = env_url("STABILITY_BASE_URL", "https://api.stability.ai")
# Stability: "errors may occur if you poll more than once every 10 seconds".
STABILITY_POLL_INTERVAL = env_float("STABILITY_POLL_INTERVAL", 10.0, minimum=0.0)

# Pipelet (Wan 2.2 fast image-to-video); enabled when the key is set.
PIPELET_API_KEY = env_str("PIPELET_API_KEY", "")
PIPELET_BASE_URL = env_url("PIPELET_BASE_URL", "https://batch.pipelet.net")
# Seconds between polls of one Pipelet job (a video takes 90-180 s once started).
PIPELET_POLL_INTERVAL = env_float("PIPELET_POLL_INTERVAL", 5.0, minimum=0.0)
# How Pipelet hands over the video: "base64" inside the result's JSON (its
# documented default, decoded as it streams in) or "binary" (a presigned https
# link, fetched at once through the safe fetch). Either answer is understood.
PIPELET_OUTPUT = env_str("PIPELET_OUTPUT", "base64").lower()
if PIPELET_OUTPUT not in ("base64", "binary"):
    raise ImproperlyConfigured(f"PIPELET_OUTPUT must be base64 or binary; got {PIPELET_OUTPUT!r}.")

# The original I2V API's variables (Pika, Replicate, G.A.M.E callbacks).
PIKAPI_BEARER_TOKEN = env_str("PIKAPI_BEARER_TOKEN", "")
PIKAPI_BASE_URL = env_url("PIKAPI_BASE_URL", "https://api.pikapikapika.io/web")
# Seconds between polls of one Pika job (the original polled every 10 s).
PIKA_POLL_INTERVAL = env_float("PIKA_POLL_INTERVAL", 10.0, minimum=0.0)
REPLICATE_API_TOKEN = env_str("REPLICATE_API_TOKEN", "")
# Where the `replicate` client sends its calls; tests and demos point it at a fake.
REPLICATE_BASE_URL = env_url("REPLICATE_BASE_URL", "https://api.replicate.com")
# The CLIP interrogator that writes a prompt for providers that need one (the
# model and version the original I2V API used), and its two inputs.
REPLICATE_MODEL_ID = env_str(
    "REPLICATE_MODEL_ID",
    "pharmapsychotic/clip-interrogator:8151e1c9f47e696fa316146a2e35812ccf79cfc9eba05b11c7f450155102af70",
)
CLIP_MODEL_NAME = env_str("CLIP_MODEL_NAME", "ViT-L-14/openai")
CLIP_MODE = env_str("CLIP_MODE", "best")
# The image-to-video model behind the `replicate` provider ("owner/name" or
# "owner/name:version"); only models whose inputs providers/replicate.py maps work.
REPLICATE_VIDEO_MODEL = env_str(
    "REPLICATE_VIDEO_MODEL",
    "stability-ai/stable-video-diffusion:3f0457e4619daac51203dedb472816fd4af51f3149fa7a9e0b5ffcf1b8172438",
)
# Seconds between two looks at one prediction (CLIP or video). Replicate allows
# 3000 reads a minute per account and its own client polls every 0.5 s; 2 s keeps
# a CLIP "fast" run (1-2 s) quick and hundreds of jobs well under the limit.
REPLICATE_POLL_INTERVAL = env_float("REPLICATE_POLL_INTERVAL", 2.0, minimum=0.0)
# The secret Replicate signs its webhooks with ("whsec_..."); empty: the account's
# default secret is fetched with REPLICATE_API_TOKEN and kept in memory.
REPLICATE_WEBHOOK_SECRET = env_str("REPLICATE_WEBHOOK_SECRET", "")
# The prompt given to a provider that needs one when the user gave none and no
# REPLICATE_API_TOKEN is set (empty: such jobs are refused at creation).
DEFAULT_PROMPT = env_str("DEFAULT_PROMPT", "")
GAME_API_KEY = env_str("GAME_API_KEY", "")
CALLBACK_API_URL = env_url("CALLBACK_API_URL", "")
# The provider behind POST /api/v1/i2v when Pika and Replicate's keys are not
# both set (with both: CLIP interrogator, then Pika, as the original did).
I2V_COMPAT_PROVIDER = env_str("I2V_COMPAT_PROVIDER", "local")
# --- Outbound webhooks (and the I2V callback: the same machinery) ---
# Seconds before each attempt of a delivery, the first included (Standard
# Webhooks: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h);
# each pause gets +-5% jitter. When the list runs out the delivery has failed.
WEBHOOK_RETRY_SCHEDULE = env_seconds_list(
    "WEBHOOK_RETRY_SCHEDULE", [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0]
)
# Seconds one attempt may take in all (connect, send, answer).
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 15.0, minimum=0.5)
# Seconds to wait for a connection: a host that does not take one is given up sooner.
WEBHOOK_CONNECT_TIMEOUT = env_float("WEBHOOK_CONNECT_TIMEOUT", 5.0, minimum=0.1)
# The longest Retry-After (on 429 and 503) we honour, in seconds.
WEBHOOK_RETRY_AFTER_MAX = env_float("WEBHOOK_RETRY_AFTER_MAX", 3600.0, minimum=0.0)
# Attempts in flight to one receiver at a time, all in one queue task.
WEBHOOK_ENDPOINT_CONCURRENCY = env_int("WEBHOOK_ENDPOINT_CONCURRENCY", 4, minimum=1)
# Delivery tasks in flight at a time, across receivers: what webhooks may take
# of the workers (the rest always run jobs). Default: all workers but one.
WEBHOOK_MAX_TASKS = env_int("WEBHOOK_MAX_TASKS", max(1, Q_CLUSTER["workers"] - 1), minimum=1)
# The I2V API callback's own settings, kept for existing installs: the pauses
# before each retry (the first attempt is at once) and one attempt's deadline.
# Unset, the WEBHOOK_ ones apply.
CALLBACK_RETRY_SCHEDULE = env_seconds_list("CALLBACK_RETRY_SCHEDULE", []) or None
CALLBACK_TIMEOUT = env_float("CALLBACK_TIMEOUT", 0.0, minimum=0.0) or None

# Kling through AI/ML API (providers/kling.py): enabled when the key is set.
AIMLAPI_KEY = env_str("AIMLAPI_KEY", "")
AIMLAPI_BASE_URL = env_url("AIMLAPI_BASE_URL", "https://api.aimlapi.com")
# Seconds between polls of one Kling job (AI/ML API's own sample polls every 10 s;
# a 5 s clip takes about 4-5 minutes).
AIMLAPI_POLL_INTERVAL = env_float("AIMLAPI_POLL_INTERVAL", 10.0, minimum=0.0)
# true: send jobs to the legacy /v2/generate/video/kling/generation of the spec
# file instead of /v2/video/generations (for accounts or gateways that lack the latter).
AIMLAPI_LEGACY_ENDPOINT = env_bool("AIMLAPI_LEGACY_ENDPOINT", False)

# Credits a new account starts with.
STARTING_CREDITS = env_int("STARTING_CREDITS", 100, minimum=0)
# Credits charged per successful job, by provider name (or provider/model for one
# model: pipelet/wan22-fast-i2v-pro=30, which wins); overrides the registry.
PROVIDER_COSTS = _read("PROVIDER_COSTS", env.dict, {})

# --- Logging ----------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-q2 logs as "django-q"; its per-task INFO lines cost throughput.
    "loggers": {"django-q": {"level": "WARNING"}},
}
