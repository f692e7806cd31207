"""Settings of the Modoboa project made by tests/modoboa2/setup, pointed at one test's database
($MODOBOA_TEST_DATABASE_URL, in dj-database-url's syntax) and Redis ($MODOBOA_TEST_REDIS_URL).
Used with DJANGO_SETTINGS_MODULE=settings and this directory first on PYTHONPATH."""
import os

import dj_database_url

from project.settings import *  # noqa: F401,F403  (what `modoboa-admin.py deploy` wrote)
from project.settings import CACHES, DATABASES, REST_FRAMEWORK, RQ_QUEUES

DATABASES["default"] = dj_database_url.parse(os.environ["MODOBOA_TEST_DATABASE_URL"])
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # As `modoboa-admin.py deploy` writes it for MySQL.
    DATABASES["default"]["OPTIONS"] = {"init_command": "SET foreign_key_checks = 0;", "charset": "utf8mb4"}

REDIS_URL = os.environ["MODOBOA_TEST_REDIS_URL"]
for queue in RQ_QUEUES.values():
    queue["URL"] = REDIS_URL
CACHES["default"]["LOCATION"] = REDIS_URL

ALLOWED_HOSTS = ["mail.example.test", "testserver", "localhost", "127.0.0.1"]
# No Dovecot beside the tests: the schemes Dovecot would offer (else Modoboa narrows the
# password scheme choices to MD5-CRYPT and PLAIN, and raises an alarm).
DOVECOT_SUPPORTED_SCHEMES = "SHA512-CRYPT SHA256-CRYPT BLF-CRYPT ARGON2ID SSHA MD5-CRYPT PLAIN CRYPT"
# Modoboa throttles its API per user (5 requests a second): the population script is faster.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {k: "100000/second" for k in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]}
