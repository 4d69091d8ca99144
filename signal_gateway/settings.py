"""Django settings: everything comes from the environment, with defaults that run on one machine.

With nothing set, the gateway runs as a demo: SQLite in ./var, an in-process cache, and a Kafka
broker on 127.0.0.1:9092 (``bin/demo`` starts one).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from signal_gateway.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GATEWAY_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET_KEY = "insecure-demo-key-set-SECRET_KEY-in-production-0123456789abcdef"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY)
# The gateway answers on customers' own subdomains, so any Host is accepted unless narrowed.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    # Its templates and static files: /docs serves our own copy of Swagger UI, not a CDN's.
    "ninja",
    "pipelines",
    "ingestion",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pipelines.audit.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Admin login throttling (django-axes). Failed logins are counted per client address (as
# signal_gateway.login_throttle resolves it, trusting X-Forwarded-For only from TRUSTED_PROXIES) in
# the database, so every gateway process shares the count with or without Redis. Past the limit
# that address gets 429 for the cool-off, whatever username it tries; a success resets its count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("ADMIN_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no start-up banner on every command's stderr; lockouts are still logged
AXES_CLIENT_IP_CALLABLE = "signal_gateway.login_throttle.client_ip"
AXES_LOCKOUT_CALLABLE = "signal_gateway.login_throttle.throttled_response"

ROOT_URLCONF = "signal_gateway.urls"
ASGI_APPLICATION = "signal_gateway.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if not env_str("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}"),
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A dead database must fail a lookup quickly, not hang a request for the OS default. libpq
    # counts the whole connection set-up, so a server that accepts and never answers is bounded
    # too; a stalled query has no libpq timeout: pipelines.dbcalls bounds those.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 2

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

KAFKA_BOOTSTRAP_SERVERS = env_str("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA_TOPIC = env_str("KAFKA_TOPIC", "raw-events")
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 6)
# Refused events of known pipelines, for operators (ingestion/rejected.py); created at start-up too.
KAFKA_REJECTED_TOPIC = env_str("KAFKA_REJECTED_TOPIC", "rejected-events")
# How long a request waits for Kafka's acknowledgement before answering 503.
KAFKA_ACK_TIMEOUT = env_float("KAFKA_ACK_TIMEOUT", 2.0)
# On SIGTERM, how long requests in flight may take to finish before the process stops.
SHUTDOWN_GRACE_SECONDS = env_float("SHUTDOWN_GRACE_SECONDS", 10.0)
# How long librdkafka waits to fill a produce request; every request waits this long for its ack.
KAFKA_LINGER_MS = env_float("KAFKA_LINGER_MS", 0.5)
# How long librdkafka keeps trying a record before it gives up (a request gives up at KAFKA_ACK_TIMEOUT
# and spools it; a record the producer then still delivers is skipped by the drainer).
KAFKA_MESSAGE_TIMEOUT_MS = env_int("KAFKA_MESSAGE_TIMEOUT_MS", 30_000)

# The durable local spool (ingestion/spool.py): where events go while Kafka cannot take them, one
# directory per process under SPOOL_DIR; past SPOOL_MAX_BYTES (all processes together) requests get 503.
SPOOL_DIR = env_str("SPOOL_DIR", str(VAR_DIR / "spool"))
SPOOL_MAX_BYTES = env_int("SPOOL_MAX_BYTES", 1024**3)

# Deduplication by messageId (ingestion/dedup.py) and rate limits (ingestion/ratelimit.py), in Redis.
DEDUP_WINDOW_SECONDS = env_int("DEDUP_WINDOW_SECONDS", 24 * 3600)
# The longest a request waits for Redis (dedup marks, rate-limit leases) before going on without it.
REDIS_HOT_PATH_TIMEOUT = env_float("REDIS_HOT_PATH_TIMEOUT", 0.25)

# Deadlines on the wire (signal_gateway.adapters.daphne): a request's headers from its first byte, its
# body from the end of its headers. Twisted's idle timer alone restarts on every byte a client trickles.
HTTP_HEADERS_TIMEOUT = env_float("HTTP_HEADERS_TIMEOUT", 10.0)
HTTP_BODY_TIMEOUT = env_float("HTTP_BODY_TIMEOUT", 30.0)
# Server-side signatures over the timestamp and body only (sha256=, SPEC §2), not bound to a path:
# accepted until every client signs v2= (README, "Signing server requests").
SERVER_SIGNATURE_V1 = env_bool("SERVER_SIGNATURE_V1", True)


def _dev_encryption_key(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(b"signal-gateway:" + secret.encode()).digest()).decode()


# Fernet keys (url-safe base64 of 32 bytes). The demo derives one from SECRET_KEY; production sets it.
ENCRYPTION_KEY = env_str("ENCRYPTION_KEY") or _dev_encryption_key(SECRET_KEY)
ENCRYPTION_KEY_PREVIOUS = env_str("ENCRYPTION_KEY_PREVIOUS")
ENCRYPTION_KEY_IS_DEFAULT = not env_str("ENCRYPTION_KEY")

COOKIE_DOMAIN = env_str("COOKIE_DOMAIN")
# CIDRs of proxies whose X-Forwarded-For is believed, e.g. "10.0.0.0/8,127.0.0.1/32".
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# Key store: how long a process trusts a cached answer before it revalidates in the background.
# With Redis, changes arrive by pub/sub at once, so the TTL only covers missed messages.
KEYSTORE_FRESH_SECONDS = env_float("KEYSTORE_FRESH_SECONDS", 60.0 if REDIS_URL else 2.0)
KEYSTORE_NEGATIVE_SECONDS = env_float("KEYSTORE_NEGATIVE_SECONDS", 30.0)
# At most this many answers are cached per process (least recently used go first). Unknown tokens
# are refused from the set of valid tokens, which is not counted here: it holds every valid token.
KEYSTORE_MAX_ENTRIES = env_int("KEYSTORE_MAX_ENTRIES", 10_000)
# Threads (each with its own database connection) for the key store's lookups, so one stalled query
# does not hold up the others.
KEYSTORE_DB_THREADS = env_int("KEYSTORE_DB_THREADS", 4)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# Security headers for the admin; TLS itself is terminated in front of the gateway.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# One JSON object per line (python-json-logger), for log collectors; LOG_FORMAT=plain for a terminal.
# Every record logged while a request is handled carries its request_id (ingestion/request_ids.py).
LOG_FORMAT = env_str("LOG_FORMAT", "json").lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING_CONFIG = "signal_gateway.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "ingestion.request_ids.RequestIdFilter"},
        "one_line_warning": {"()": "signal_gateway.log_filters.OneLineWarning"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": ["levelname", "name", "process", "message"],
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            "timestamp": "time",
        },
        "plain": {
            "()": "logging.Formatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            "defaults": {"request_id": "-"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Anyone can send a malformed Host; Django logs each at ERROR with a traceback. It is the
        # client's mistake, answered 400: one line at WARNING says all there is to say.
        "django.security.DisallowedHost": {"filters": ["one_line_warning"]},
    },
}
