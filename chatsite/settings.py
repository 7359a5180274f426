"""Settings for chatsite, read from the environment (and an optional `.env` file).

The defaults are the embedded deployment: SQLite and Celery's filesystem broker
under `var/`, and the simulated upstream when no OPENAI_API_KEY is set.
Production sets DJANGO_ENV=production, DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL /
REDIS_URL (Redis); then a secret key is required and the site is served over HTTPS.
Secrets can come from files (`NAME_FILE`), as Docker and Kubernetes secrets do.
"""

import hashlib
import os
import warnings
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envdecimal(name: str) -> Decimal | None:
    value = os.environ.get(name)
    return Decimal(value) if value else None


def envsecret(name: str) -> str:
    """NAME, or the contents of the file NAME_FILE points at (a mounted secret)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc}") from exc
    return os.environ.get(name, "")


VAR_DIR = Path(os.environ.get("CHATSITE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# "embedded" (one machine, plain HTTP on loopback) or "production" (behind an HTTPS proxy).
DJANGO_ENV = os.environ.get("DJANGO_ENV", "embedded").strip().lower()
if DJANGO_ENV not in ("embedded", "production"):
    raise ImproperlyConfigured("DJANGO_ENV must be 'embedded' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = envbool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be false when DJANGO_ENV=production.")
SECRET_KEY = envsecret("DJANGO_SECRET_KEY")
if not SECRET_KEY and PRODUCTION:
    # Every web process on every host must sign sessions with the same key: never invent one.
    raise ImproperlyConfigured(
        "Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) when DJANGO_ENV=production."
    )
if not SECRET_KEY:
    # A random key per checkout keeps the embedded default safe without setup.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        # Processes starting together (web, worker) must end up with one key: each writes
        # its own file and links it into place, which only the first one manages.
        draft = VAR_DIR / f".secret_key.{os.getpid()}"
        draft.write_text(get_random_secret_key())
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
# Addresses of the reverse proxies whose X-Forwarded-For / -Proto headers are believed
# (uvicorn's --forwarded-allow-ips): none unless set, so no client can choose its address.
TRUSTED_PROXIES = envlist("DJANGO_TRUSTED_PROXIES", "")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "chatsite.apps.SiteAdminConfig",  # django.contrib.admin with chatsite.admin.SiteAdmin
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "conversations",
]

MIDDLEWARE = [
    # First: load balancers' probes are answered before host checks and HTTPS redirects.
    "chatsite.health.HealthCheckMiddleware",
    "chatsite.errors.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "chatsite.security.StaticFilesMiddleware",
    "chatsite.logs.RequestIdMiddleware",
    "chatsite.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chatsite.security.PrivatePagesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

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
                "django.template.context_processors.i18n",
                "conversations.chat.context_processors.upstream",
                "conversations.accounts.context_processors.signup",
                "conversations.accounts.context_processors.theme",
            ],
        },
    },
]

WSGI_APPLICATION = "chatsite.wsgi.application"
ASGI_APPLICATION = "chatsite.asgi.application"
# Threads of a web process serving pages and forms (chatsite/asgi.py); keep it above
# DB_POOL_MAX_SIZE only if requests often wait on something else than the database.
WEB_THREADS = envint("WEB_THREADS", 32)
# Serves a reply's event stream (its URL signed for the reader) ahead of Django's handler
# (chatsite/asgi.py); empty: Django's own async view serves it.
LIVE_EVENTS_APP = os.environ.get("LIVE_EVENTS_APP", "conversations.chat.live.application")
# Serves the OpenAI-compatible API (/v1/, /api/v1/) ahead of Django's handler.
API_APP = "conversations.api.serving.application"
# Threads of a web process writing API calls' rows (two short steps a call; the call
# itself waits on the event loop, not a thread). Few on purpose: more threads running ORM
# code take the GIL from the event loop, and 50 concurrent calls then waited a second on
# reading the upstream's answer (p95 1.6 s with 8 threads, 0.65 s with 2).
API_THREADS = envint("API_THREADS", 2)

DATABASE_URL = envsecret("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool("DB_POOL", True):
    # A bounded pool per process: hundreds of worker threads and open reply streams
    # borrow a connection for each step instead of opening (or exhausting) their own.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": envint("DB_POOL_MIN_SIZE", 2),
        "max_size": envint("DB_POOL_MAX_SIZE", 16),
        "timeout": envfloat("DB_POOL_TIMEOUT", 30.0),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server and the worker share one file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# A test run's database is its own (a file, so worker subprocesses can share it), and
# parallel test runs on one machine never meet.
DATABASES["default"]["TEST"] = {
    "NAME": str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3")
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    else f"test_chatsite_{os.getpid()}"
}

# Static files go out as FileResponse, a sync iterator: fine for small assets under ASGI.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat_home"
LOGOUT_REDIRECT_URL = "login"

# --- Single sign-on (OpenID Connect: conversations/accounts/oidc.py, docs/deploy.md) ---
# On when OIDC_ISSUER and OIDC_CLIENT_ID are set: the log-in pages (the admin's too) offer
# "Log in with <OIDC_PROVIDER_NAME>". The provider's endpoints and signing keys are read
# from {OIDC_ISSUER}/.well-known/openid-configuration on first use; ID tokens must be RS256.
# The redirect URI to register at the provider: {site}/accounts/oidc/callback/.
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").strip()
OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET")
OIDC_SCOPES = os.environ.get("OIDC_SCOPES") or "openid email profile"
# The claim naming the user's groups (a list of names, or one name); empty: no group sync.
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups").strip()
OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME") or _("single sign-on")
# Seconds each call to the provider (discovery, token, keys, userinfo) may take.
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT", 10.0)
SSO = bool(OIDC_ISSUER and OIDC_CLIENT_ID)
# Off: local passwords log in nowhere (site and admin), and sign-up is closed; everyone,
# staff too, logs in through single sign-on.
PASSWORD_LOGIN = envbool("PASSWORD_LOGIN", True)
if not PASSWORD_LOGIN and not SSO:
    raise ImproperlyConfigured(
        "PASSWORD_LOGIN=false leaves no way to log in: set OIDC_ISSUER and OIDC_CLIENT_ID too."
    )
if SSO:
    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "conversations.accounts.oidc.Backend",
    ]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Our own few formats first (chatsite/formats/<language>/formats.py), Django's for the rest.
FORMAT_MODULE_PATH = ["chatsite.formats"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` (run by `make run`) fills it; WhiteNoise serves it, with hashed
# names cached for a year.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- HTTPS and browser security ---
# Served over HTTPS, with TLS ended by a reverse proxy that sets X-Forwarded-Proto.
HTTPS = envbool("DJANGO_HTTPS", PRODUCTION)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# htmx reads the token from the page (hx-headers on <body>), never from the cookie.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Only our own files: no inline script or style, no other origin (htmx is told to match:
# see the htmx-config meta tag in base.html).
CONTENT_SECURITY_POLICY = os.environ.get("DJANGO_CSP") or (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- Upstream (Chat Completions) ---
OPENAI_API_KEY = envsecret("OPENAI_API_KEY")
# Without a key the project's own simulator answers, and the UI says so.
UPSTREAM_SIMULATED = envbool("UPSTREAM_SIMULATED", not OPENAI_API_KEY)
SIMULATOR_PORT = envint("SIMULATOR_PORT", 8001)
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL") or (
    f"http://127.0.0.1:{SIMULATOR_PORT}/v1" if UPSTREAM_SIMULATED else "https://api.openai.com/v1"
)
if UPSTREAM_SIMULATED and not OPENAI_API_KEY:
    OPENAI_API_KEY = "sk-simulated"
OPENAI_TIMEOUT = envfloat("OPENAI_TIMEOUT", 120.0)
OPENAI_CONNECT_TIMEOUT = envfloat("OPENAI_CONNECT_TIMEOUT", 10.0)
CHAT_MODELS = envlist("CHAT_MODELS", "gpt-4o-mini,gpt-4o,gpt-4.1-mini,gpt-3.5-turbo")
CHAT_DEFAULT_MODEL = os.environ.get("CHAT_DEFAULT_MODEL") or CHAT_MODELS[0]
# The environment's provider as shown beside its models (providers added in the admin
# have their own names).
DEFAULT_PROVIDER_NAME = os.environ.get("DEFAULT_PROVIDER_NAME", "default")
# Fernet keys for providers' API keys at rest (conversations/providers/secrets.py): the
# first encrypts, all decrypt; unset, one is derived from the secret key.
CHATSITE_ENCRYPTION_KEY = envsecret("CHATSITE_ENCRYPTION_KEY")
# Providers' model lists (GET {base}/models) are read in the background this often, with
# these short timeouts: no page ever waits on a provider.
PROVIDER_REFRESH_INTERVAL = envfloat("PROVIDER_REFRESH_INTERVAL", 300.0)
PROVIDER_MODELS_CONNECT_TIMEOUT = envfloat("PROVIDER_MODELS_CONNECT_TIMEOUT", 3.0)
PROVIDER_MODELS_TIMEOUT = envfloat("PROVIDER_MODELS_TIMEOUT", 5.0)

# Ask the upstream to stream (Server-Sent Events); replies then appear as they are written.
UPSTREAM_STREAM = envbool("UPSTREAM_STREAM", True)
# How often the worker writes the growing reply to the database (the embedded channel),
# and how often when Redis carries the deltas (the database copy is then for reloads).
STREAM_DB_FLUSH_INTERVAL = envfloat("STREAM_DB_FLUSH_INTERVAL", 0.05)
STREAM_REDIS_DB_FLUSH_INTERVAL = envfloat("STREAM_REDIS_DB_FLUSH_INTERVAL", 1.0)
STREAM_STOP_CHECK_INTERVAL = envfloat("STREAM_STOP_CHECK_INTERVAL", 0.25)
# How often the web process looks for new text when Redis is not in use.
STREAM_POLL_INTERVAL = envfloat("STREAM_POLL_INTERVAL", 0.05)
# At most one text event per reply stream this often (each re-renders the whole reply).
STREAM_EVENT_MIN_INTERVAL = envfloat("STREAM_EVENT_MIN_INTERVAL", 0.1)
# A reply stream with nothing to send says so this often (a comment), so proxies keep it.
STREAM_HEARTBEAT_SECONDS = envfloat("STREAM_HEARTBEAT_SECONDS", 15.0)

# --- Completions: retries, leases and the sweep that recovers lost work ---
COMPLETION_MAX_ATTEMPTS = envint("COMPLETION_MAX_ATTEMPTS", 5)
COMPLETION_RETRY_BASE_DELAY = envfloat("COMPLETION_RETRY_BASE_DELAY", 1.0)
COMPLETION_RETRY_MAX_DELAY = envfloat("COMPLETION_RETRY_MAX_DELAY", 60.0)
# A claim outlives the longest wait on the upstream; after that another worker may take it
# over. A streamed reply renews it every third of it while text keeps coming.
COMPLETION_LEASE_SECONDS = envfloat("COMPLETION_LEASE_SECONDS", OPENAI_TIMEOUT + 30)
# A streamed reply still being written after this long is cut off, its text kept.
COMPLETION_MAX_SECONDS = envfloat("COMPLETION_MAX_SECONDS", 1800.0)
# How long a reply's event stream URL stays good (a reader reconnecting later polls).
LIVE_TOKEN_SECONDS = envint("LIVE_TOKEN_SECONDS", int(COMPLETION_MAX_SECONDS) + 600)
# A queued completion no worker has started after this long is sent again.
COMPLETION_STALE_QUEUED_SECONDS = envfloat("COMPLETION_STALE_QUEUED_SECONDS", 60.0)
COMPLETION_SWEEP_INTERVAL = envfloat("COMPLETION_SWEEP_INTERVAL", 30.0)

# Retention (conversations.privacy.retention): the beat task deletes idle conversations
# (the site setting's limit), expired temporary chats and old API calls, this many per
# transaction and at most this many batches of each per run (the next run goes on).
RETENTION_BATCH_SIZE = envint("RETENTION_BATCH_SIZE", 200)
RETENTION_MAX_BATCHES = envint("RETENTION_MAX_BATCHES", 50)
RETENTION_PURGE_INTERVAL = envfloat("RETENTION_PURGE_INTERVAL", 600.0)
# A temporary chat is deleted this long after its last message.
TEMPORARY_CHAT_HOURS = envint("TEMPORARY_CHAT_HOURS", 24)

# --- Budgets: site-wide monthly defaults (per-user overrides live in the admin) ---
BUDGET_MONTHLY_TOKENS = envint("BUDGET_MONTHLY_TOKENS", 0) or None
BUDGET_MONTHLY_COST = envdecimal("BUDGET_MONTHLY_COST")

# --- Celery ---
REDIS_URL = envsecret("REDIS_URL")
# Keys of live replies; by default one namespace per database, so deployments (and test
# runs) that share a Redis never read each other's replies. In production every host must
# agree on it however it spells the database's address: a fixed prefix.
REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX") or (
    "chatsite:"
    if PRODUCTION
    else "chatsite:{}:".format(
        hashlib.sha256(
            f"{DATABASES['default'].get('HOST')}/{DATABASES['default']['NAME']}".encode()
        ).hexdigest()[:10]
    )
)
# The cache holds the abuse limits' counters (and, with Redis, the sessions). With Redis every
# web process shares them, through one client per process (chatsite.cache); the embedded
# default serves from one web process, whose memory is enough.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "chatsite.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_KEY_PREFIX}cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Sessions are read from that shared cache (the database only on a miss, on every write,
# and while the cache is away): no query per request. Not with the per-process memory
# cache, which another web process would not see emptied at log-out.
if REDIS_URL:
    SESSION_ENGINE = "conversations.accounts.sessions"

CELERY_BROKER_URL = envsecret("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "drafts").mkdir(parents=True, exist_ok=True)
    # kombu's own, but writing each message beside the queue and renaming it into place.
    CELERY_BROKER_TRANSPORT = "chatsite.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "draft_folder": str(_broker_dir / "drafts"),
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Seconds between looks at the folder: the latency floor of the embedded broker.
        "polling_interval": 0.05,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers and beat wait for the broker however long it is down (by default they exit after
# 100 tries, about 45 minutes). Surviving a Redis restart needs celery 5.6.3: requirements.txt.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "chatsite")
# The tasks live in the chat domain's package, not in the app's top module where
# autodiscovery looks (their names stay "conversations.tasks.*").
CELERY_IMPORTS = [
    "conversations.chat.tasks",
    "conversations.privacy.tasks",
    "conversations.accounts.tasks",
    "conversations.providers.tasks",
]
CELERY_BEAT_SCHEDULE = {
    "sweep-completions": {
        "task": "conversations.tasks.sweep_completions",
        "schedule": COMPLETION_SWEEP_INTERVAL,
    },
    "retention-purge": {
        "task": "conversations.tasks.retention_purge",
        "schedule": RETENTION_PURGE_INTERVAL,
    },
    "sessions-clear": {"task": "conversations.tasks.sessions_clear", "schedule": 24 * 3600.0},
    "providers-refresh": {
        "task": "conversations.tasks.providers_refresh",
        "schedule": PROVIDER_REFRESH_INTERVAL,
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Every line carries the request id of the web request it serves (a worker's lines too:
# the id travels with the task). LOG_FORMAT=json writes one JSON object per line.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "chatsite.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "chatsite.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Abuse limits ---
# Counted in the cache above (see conversations/limits.py); 0 turns a limit off.
# Failed log-ins per username and per client address (REMOTE_ADDR) in a sliding window.
LOGIN_FAILURES_PER_USERNAME = envint("LOGIN_FAILURES_PER_USERNAME", 5)
LOGIN_FAILURES_PER_IP = envint("LOGIN_FAILURES_PER_IP", 20)
LOGIN_FAILURE_WINDOW = envfloat("LOGIN_FAILURE_WINDOW", 60.0)
# Messages (and retries) each user may send per minute, and replies queued or being
# written at once per user (counted in the database).
MESSAGES_PER_MINUTE = envint("MESSAGES_PER_MINUTE", 20)
# Titles made by the model after a conversation's first reply (also a site setting).
MODEL_TITLES = envbool("MODEL_TITLES", True)
MAX_REPLIES_IN_FLIGHT = envint("MAX_REPLIES_IN_FLIGHT", 3)
# The largest request body the API (/v1/) takes: a long conversation's history fits.
API_MAX_REQUEST_BYTES = envint("API_MAX_REQUEST_BYTES", 8 * 1024 * 1024)

# A person's import of conversations (/import/): the largest file (a ZIP's unpacked
# conversations too), and the most conversations and messages one file may bring.
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", 20 * 1024 * 1024)
IMPORT_MAX_CONVERSATIONS = envint("IMPORT_MAX_CONVERSATIONS", 2_000)
IMPORT_MAX_MESSAGES = envint("IMPORT_MAX_MESSAGES", 50_000)
