"""Labelwise settings, read from the environment.

A fresh checkout runs with nothing set: SQLite under var/, a secret key generated once
into var/secret_key, DEBUG off. Every variable is read through a small typed helper that
fails loudly on a bad value instead of silently falling back.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """`HEADER,value` (HTTP_X_FORWARDED_PROTO,https or X-Forwarded-Proto,https): the header
    a TLS-terminating proxy sets, and its value on an https request. Unset: none trusted."""
    parts = env_list(name, "")
    if not parts:
        return None
    if len(parts) != 2:
        raise ImproperlyConfigured(
            f"{name}={os.environ.get(name)!r} is not 'HEADER,value' (e.g. "
            "HTTP_X_FORWARDED_PROTO,https)")
    header, value = parts
    if not header.upper().startswith("HTTP_"):
        header = "HTTP_" + header.upper().replace("-", "_")
    return header.upper(), value


# Runtime state (SQLite file, secret key, uploads, model artifacts) lives in one folder
# that is never committed; LABELWISE_DATA_DIR moves it (a Docker volume, say).
DATA_DIR = Path(env_str("LABELWISE_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    from_env = os.environ.get("SECRET_KEY")
    if from_env:
        return from_env
    # No literal in the code: generate once per installation and keep it beside the data.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# HTTPS in production (`manage.py check --deploy` passes once these are set). Off by
# default so the demo runs over plain http on localhost.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# Behind a TLS-terminating proxy, the header it sets on https requests; only set this
# when the proxy strips the header from what clients send.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# The container's health check calls /healthz over plain http from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "annotate",
    "learner",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (config.csp: no inline script, no eval).
    "config.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'labelwise.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the learner write while the web app reads; the busy timeout (seconds) makes
    # a writer wait for the other one instead of failing with "database is locked", and
    # IMMEDIATE takes the write lock when a transaction starts: a transaction that read
    # first and then wants to write is refused at once, whatever the timeout, when another
    # wrote meanwhile. Long writers (imports) commit in short batches to keep waits short.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": env_int("LABELWISE_SQLITE_TIMEOUT", 20, minimum=1),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not Django's in-memory default, so tests that start worker processes or
    # threads can share the test database on SQLite too; one per test run, so two runs on
    # one machine do not write into each other's database.
    DATABASES["default"]["TEST"] = {
        "NAME": str(DATA_DIR / f"test-labelwise-{os.getpid()}.sqlite3")
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
# Login throttling (config.login): after this many failed logins for one username, or from
# one client address, within the window, further attempts are refused until it ends. The
# counts live in Django's cache (per process unless CACHES names a shared one).
LABELWISE_LOGIN_MAX_FAILURES = env_int("LABELWISE_LOGIN_MAX_FAILURES", 5, minimum=1)
LABELWISE_LOGIN_MAX_FAILURES_PER_IP = env_int("LABELWISE_LOGIN_MAX_FAILURES_PER_IP", 20,
                                              minimum=1)
LABELWISE_LOGIN_WINDOW_MINUTES = env_int("LABELWISE_LOGIN_WINDOW_MINUTES", 15, minimum=1)
# The request header holding the client's address when a proxy sits in front (e.g.
# HTTP_X_FORWARDED_FOR: its last entry, the one the proxy added); empty: REMOTE_ADDR.
LABELWISE_CLIENT_IP_HEADER = env_str("LABELWISE_CLIENT_IP_HEADER", "")
LOGIN_REDIRECT_URL = "annotate:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Vendored files are served straight from static/ (no collectstatic step for the demo).
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Uploaded import files are streamed to disk, never held whole in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
MEDIA_ROOT = DATA_DIR / "media"

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # ReadOnlyKeys: a read-only API key gets 403 on every unsafe method, whatever the view.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated",
                                   "api.permissions.ReadOnlyKeys"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    # The schema keeps the URLconf's {pk}, the name every project view declares
    # (api.views.PROJECT_ID): coerced to {id}, each operation carried a required `pk`
    # parameter its path did not have.
    "SCHEMA_COERCE_PATH_PK": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Labelwise API",
    "DESCRIPTION": "Projects, documents, annotations, training rounds, predictions and "
    "model exports. Authenticate with `Authorization: Token <key>` (keys from /api/tokens/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ExportFormatEnum": "learner.models.ExportJob.Format",
        "ExportStatusEnum": "learner.models.ExportJob.Status",
        "RoundStatusEnum": "learner.models.Round.Status",
        "TaskTypeEnum": "annotate.models.Project.TaskType",
        "AvailableTaskTypeEnum": "api.serializers.AVAILABLE_TASK_TYPES",
    },
    # Swagger UI and Redoc from the vendored sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl null: Swagger UI would otherwise send the schema to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None,
                            "persistAuthorization": True},
}
# Models the predictions endpoint keeps loaded (one per round); each MiniLM is ~90 MB.
LABELWISE_PREDICT_CACHE_SIZE = env_int("LABELWISE_PREDICT_CACHE_SIZE", 3, minimum=1)
# What one predictions request may ask for: a request runs inside a web worker, so its
# texts and their total length bound the time and memory one caller can take (1,024 texts
# of 7.5 MB took 143 s and 1.5 GB). Clients send more in batches.
LABELWISE_PREDICT_MAX_TEXTS = env_int("LABELWISE_PREDICT_MAX_TEXTS", 256, minimum=1)
LABELWISE_PREDICT_MAX_CHARS = env_int("LABELWISE_PREDICT_MAX_CHARS", 1_000_000, minimum=1)
# The distilled-student export (learner.export): at most this many unlabelled pool texts
# (a random sample) carry the teacher's soft labels, and at most this many optimizer steps
# train the student, so one export stays in minutes on a CPU.
LABELWISE_DISTILL_MAX_POOL = env_int("LABELWISE_DISTILL_MAX_POOL", 5000, minimum=1)
LABELWISE_DISTILL_MAX_STEPS = env_int("LABELWISE_DISTILL_MAX_STEPS", 600, minimum=1)


def env_rate(name: str, default: str) -> str:
    """A throttle rate as DRF writes it: <requests>/<second|minute|hour|day>."""
    value = env_str(name, default).strip()
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0
            and period in {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d",
                           "day"}):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 120/min or 20/hour")
    return value


# Per-user throttles (api.throttles; counted in Django's cache): predictions, and creating
# API keys (the API's POST me/tokens/ and the keys page together).
LABELWISE_PREDICT_RATE = env_rate("LABELWISE_PREDICT_RATE", "120/min")
LABELWISE_TOKEN_RATE = env_rate("LABELWISE_TOKEN_RATE", "20/hour")
# Guidelines are rendered once per version and shown on every annotator page; a version
# longer than this many characters is refused.
LABELWISE_GUIDELINE_MAX_CHARS = env_int("LABELWISE_GUIDELINE_MAX_CHARS", 200_000, minimum=1)
# Characters in one imported document's text; a longer one rejects the import at its line.
LABELWISE_MAX_DOCUMENT_CHARS = env_int("LABELWISE_MAX_DOCUMENT_CHARS", 100_000, minimum=1)

# Anyone signed in may create a project and so be its lead: only staff create accounts from
# a project's members page, unless this lets every lead do it (a closed team's server).
LABELWISE_LEADS_CREATE_USERS = env_bool("LABELWISE_LEADS_CREATE_USERS", False)

# A document handed to an annotator is reserved for them this long; after that it returns
# to the queue so an abandoned browser tab does not hold work forever.
LABELWISE_ASSIGNMENT_TTL_SECONDS = env_int("LABELWISE_ASSIGNMENT_TTL_SECONDS", 3600, minimum=30)
LABELWISE_ARTIFACT_DIR = Path(env_str("LABELWISE_ARTIFACT_DIR", str(DATA_DIR / "artifacts")))
# The base models leads may train from, besides the shipped all-MiniLM-L6-v2: each folder
# here that holds a config.json is offered by name. Leads never type a path (one project
# must not load another's fine-tuned weights), so only the operator adds models.
LABELWISE_MODELS_DIR = Path(env_str("LABELWISE_MODELS_DIR", str(DATA_DIR / "models")))
# The learner worker lowers its own CPU priority by this much (Unix nice, 0-19) so that on
# a machine it shares with the web app, annotators' requests come before a round's matrix
# products (bench/load.py). 0 keeps the priority it was started with.
LABELWISE_LEARNER_NICE = env_int("LABELWISE_LEARNER_NICE", 10, minimum=0)

# Quiet by default, everything with LABELWISE_VERBOSE=1 (or the commands' --verbose):
# the development server's line per request (a dashboard polls every two seconds) only
# for errors, and the ML libraries' reports and progress bars off (config.console).
LABELWISE_VERBOSE = env_bool("LABELWISE_VERBOSE", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The development server's lines as Django formats them (its DEFAULT_LOGGING), at
    # WARNING unless verbose: 4xx and 5xx answers still show, successful ones do not.
    "formatters": {"django.server": {"()": "django.utils.log.ServerFormatter",
                                     "format": "[{server_time}] {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler"},
                 "django.server": {"class": "logging.StreamHandler",
                                   "formatter": "django.server"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"handlers": ["django.server"], "propagate": False,
                                  "level": "INFO" if LABELWISE_VERBOSE else "WARNING"}},
}
