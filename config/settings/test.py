"""The test suite: a throw-away embedded cluster unless DATABASE_URL points at a real server."""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR, celery_broker, database_settings

DEBUG = False
DATABASES = {"default": database_settings(throwaway=True)}
# Speed only: base.py (and so production) hash with Argon2 first, which tests/accounts checks.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ADMINS = [("Security officer", "security@exotrial.example.org")]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Never share a filesystem broker folder with a `make run` worker on the same checkout.
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker(VAR_DIR / "celery-broker-test")
# Live-server request threads must not keep persistent connections open past the test run.
DATABASES["default"]["CONN_MAX_AGE"] = 0
ARTIFACT_ROOT = VAR_DIR / "test-artifacts"

# Fault tests start web and worker processes of their own and count the e-mails those send: files, not memory.
if os.environ.get("EXOTRIAL_TEST_EMAIL_DIR"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["EXOTRIAL_TEST_EMAIL_DIR"]
