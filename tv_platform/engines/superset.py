"""Superset over the marts: dashboards as code (``superset_exports/``), imported into a real Superset.

``tv-platform superset up`` does everything, idempotently:

1. **install** — a virtualenv of its own at ``<TVP_CACHE_DIR>/superset-venv`` with exact pins (:data:`PINS`): Superset
   6.1 plus what its wheel lacks (``rich``, ``cachetools``, ``flask-caching==2.3.1``), the warehouse drivers
   (psycopg2 for Greenplum/PostgreSQL, clickhouse-connect with chDB for ClickHouse — the platform's versions, since
   the chDB data directory is shared). A stamp file holding the pins makes a second run a no-op.
2. **prepare** — ``<TVP_STATE_DIR>/superset/``: ``superset_config.py`` (SQLite metadata ``superset.db``), a
   ``SECRET_KEY`` (``TVP_SUPERSET_SECRET_KEY``, else generated once into ``secret_key``, mode 0600, never in the repo),
   ``superset db upgrade`` + ``superset init`` (stamped by version) and the admin user from
   ``TVP_SUPERSET_ADMIN_USER`` / ``TVP_SUPERSET_ADMIN_PASSWORD`` (default admin/admin, for a laptop only).
3. **start** — gunicorn, one worker process with threads, on ``127.0.0.1:8088`` (``TVP_SUPERSET_PORT``); pid file
   ``<state>/run/superset.pid``, log ``<state>/logs/superset.log`` (the conventions of ``tv_platform/stack/base.py``).
   One process on purpose: the embedded ClickHouse engine (chDB) admits a single process at a time.
4. **import** — the bundle in ``superset_exports/`` (databases, datasets, charts, dashboards) through
   ``/api/v1/assets/import/`` (which overwrites charts and datasets too; the dashboard importer would keep stale
   charts), with the databases' URIs and dataset schemas taken from the settings and the passwords supplied in the
   ``passwords`` form field — no file holds one.

The ClickHouse database is ``clickhousedb:///<db>?interface=chdb&path=<dir>`` locally: clickhouse-connect's SQLAlchemy
dialect passes ``interface``/``path`` to its client, which embeds chDB in the Superset process. Superset opens a
connection per query (``NullPool``), so the engine is released between queries and Dagster's loads can take it; a
query that arrives while a load holds the directory waits for it (``CHDB_WAIT_SECONDS``, a hook in the generated
``superset_config.py``) and fails with "Unable to open the chdb engine" only after that.

Also here: :class:`SupersetClient` (the REST API, logged in), :class:`Chromium` (headless Chromium driven over the
DevTools protocol on a pipe — no browser driver needed) and :func:`render_dashboard` (log in, open a dashboard, wait
for every chart, report each chart's state and the chart-data responses, screenshot).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from tv_platform.settings import Settings, get_settings
from tv_platform.stack.base import Service, StackError, run_checked

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_DIR = REPO_ROOT / "superset_exports"

SUPERSET_VERSION = "6.1.0"
PINS: tuple[str, ...] = (
    f"apache-superset=={SUPERSET_VERSION}",
    # Superset 6.1's wheel imports these without declaring them (flask-caching: 2.3.1, newer ones break its cache)
    "rich==15.0.0",
    "cachetools==8.0.2",
    "flask-caching==2.3.1",
    # warehouse drivers: the same clickhouse-connect / chDB as the platform (they share the chDB data directory)
    "psycopg2-binary==2.9.13",
    "clickhouse-connect==1.12.0",
    "chdb==4.4.0",
)
MASK = "XXXXXXXXXX"
"""How Superset writes a password inside an exported URI; the real one comes from the ``passwords`` field."""

CHDB_WAIT_SECONDS = 30
"""How long a Superset query waits for the embedded ClickHouse while another process (a load) holds it."""

#: Chromium flags that keep it quiet on a machine without internet (without them it retries Google endpoints forever)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars", "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--metrics-recording-only",
    "--password-store=basic", "--use-mock-keychain",
)


# ---------------------------------------------------------------------------------------------------------------------
# configuration (TVP_SUPERSET_* — read here; the platform's settings keep the warehouses' endpoints)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SupersetSettings:
    host: str
    port: int
    admin_user: str
    admin_password: str
    secret_key: str | None  # None: generated once into the state directory

    @classmethod
    def from_env(cls) -> "SupersetSettings":
        port = os.environ.get("TVP_SUPERSET_PORT", "8088")
        try:
            port_number = int(port)
        except ValueError:
            raise ValueError(f"TVP_SUPERSET_PORT must be an integer, got {port!r}") from None
        return cls(
            host=os.environ.get("TVP_SUPERSET_HOST", "127.0.0.1"),
            port=port_number,
            admin_user=os.environ.get("TVP_SUPERSET_ADMIN_USER", "admin"),
            admin_password=os.environ.get("TVP_SUPERSET_ADMIN_PASSWORD", "admin"),
            secret_key=os.environ.get("TVP_SUPERSET_SECRET_KEY") or None,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


SUPERSET_ENV_VARS: dict[str, tuple[str, str]] = {
    "TVP_SUPERSET_HOST": ("127.0.0.1", "address Superset listens on"),
    "TVP_SUPERSET_PORT": ("8088", "its port"),
    "TVP_SUPERSET_ADMIN_USER": ("admin", "admin user created at `superset up`"),
    "TVP_SUPERSET_ADMIN_PASSWORD": ("admin", "its password (set it anywhere but a laptop)"),
    "TVP_SUPERSET_SECRET_KEY": ("", "Superset's SECRET_KEY; empty = generated once into <state>/superset/secret_key"),
}


# ---------------------------------------------------------------------------------------------------------------------
# the service
# ---------------------------------------------------------------------------------------------------------------------
_CONFIG_TEMPLATE = '''\
# Written by tv-platform (tv_platform/engines/superset.py) at every start: edit that file, not this one.
import os

from superset.utils.log import StdOutEventLogger

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = {sqlite_uri!r}
# SQLite metadata: wait for a writer instead of failing with "database is locked" under parallel chart requests
SQLALCHEMY_ENGINE_OPTIONS = {{"connect_args": {{"timeout": 30, "check_same_thread": False}}}}
DATA_DIR = {data_dir!r}
APP_NAME = "TV platform"
# one access-log line per request goes to the log file instead of a row per request into SQLite
EVENT_LOGGER = StdOutEventLogger()
FEATURE_FLAGS = {{
    # render every chart of a dashboard, not only those scrolled into view (headless checks and screenshots)
    "DASHBOARD_VIRTUALIZATION": False,
    "DASHBOARD_RBAC": False,
    "ALERT_REPORTS": False,
}}
ROW_LIMIT = 50000
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
# local: a login form on 127.0.0.1, no HTTPS; keep Flask-Talisman's CSP but do not force HTTPS
TALISMAN_ENABLED = True
RATELIMIT_ENABLED = False
WTF_CSRF_TIME_LIMIT = None

# ClickHouse embedded (chDB): one process at a time may open the data directory, and Superset opens it per query
# (NullPool). While another process (a Dagster load) holds it, wait for it instead of failing the chart at once.
CHDB_WAIT_SECONDS = {chdb_wait}


def _wait_for_chdb() -> None:
    import time

    from sqlalchemy import event

    try:
        from clickhouse_connect.cc_sqlalchemy.dialect import ClickHouseDialect
    except ImportError:
        return

    @event.listens_for(ClickHouseDialect, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        if cparams.get("interface") != "chdb":
            return None
        deadline = time.monotonic() + CHDB_WAIT_SECONDS
        delay = 0.2
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except Exception as exc:  # clickhouse_connect ProgrammingError "Unable to open the chdb engine"
                if "Unable to open the chdb engine" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


_wait_for_chdb()
'''


@dataclass
class SupersetService(Service):
    """Superset in its own virtualenv, SQLite metadata under ``<state>/superset``, gunicorn on 127.0.0.1:8088."""

    name: str = "superset"
    start_timeout: float = 240.0
    conf: SupersetSettings = field(default_factory=SupersetSettings.from_env)
    import_bundle: bool = True

    # ---- paths -------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "superset"

    @property
    def venv(self) -> Path:
        return self.settings.cache_dir / "superset-venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "superset_config.py"

    @property
    def metadata_db(self) -> Path:
        return self.data_dir / "superset.db"

    @property
    def install_stamp(self) -> Path:
        return self.venv / ".tvp-superset-installed"

    @property
    def init_stamp(self) -> Path:
        return self.data_dir / ".tvp-initialized"

    def ports(self) -> list[int]:
        return [self.conf.port]

    def endpoints(self) -> dict[str, str]:
        return {"superset": self.conf.url}

    # ---- install -----------------------------------------------------------------------------------------------
    def installed(self) -> bool:
        try:
            return self.install_stamp.read_text() == "\n".join(PINS) and (self.bin / "superset").exists()
        except OSError:
            return False

    def install(self, progress: Callable[[str], None]) -> None:
        if self.installed():
            return
        log = self.log_file
        python = _base_python()
        if not (self.bin / "python").exists():
            progress(f"superset: creating its virtualenv {self.venv}")
            self.venv.parent.mkdir(parents=True, exist_ok=True)
            run_checked(self.name, [python, "-m", "venv", str(self.venv)], log)
        progress(f"superset: installing {' '.join(PINS)} (a few minutes the first time; log: {log})")
        pip = [str(self.bin / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run_checked(self.name, [*pip, "install", "-q", "--upgrade", "pip"], log)
        run_checked(self.name, [*pip, "install", "-q", *PINS], log)
        self.install_stamp.write_text("\n".join(PINS))

    # ---- prepare -----------------------------------------------------------------------------------------------
    def secret_key(self) -> str:
        if self.conf.secret_key:
            return self.conf.secret_key
        path = self.data_dir / "secret_key"
        try:
            key = path.read_text().strip()
            if key:
                return key
        except OSError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key

    def process_env(self) -> dict[str, str]:
        return {
            "SUPERSET_CONFIG_PATH": str(self.config_file),
            "SUPERSET_HOME": str(self.data_dir),
            "SUPERSET_SECRET_KEY": self.secret_key(),
            "FLASK_APP": "superset.app:create_app()",
            "PYTHONUNBUFFERED": "1",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONPATH": "",  # nothing of the platform's interpreter leaks into Superset's
            # keep Superset's own process tree away from the platform's settings and virtualenv
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(self.venv),
        }

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = _CONFIG_TEMPLATE.format(sqlite_uri=f"sqlite:///{self.metadata_db}", data_dir=str(self.data_dir),
                                       chdb_wait=CHDB_WAIT_SECONDS)
        if not self.config_file.exists() or self.config_file.read_text() != text:
            self.config_file.write_text(text)

    def _superset(self, *args: str) -> None:
        env = {**os.environ, **self.process_env()}
        run_checked(self.name, [str(self.bin / "superset"), *args], self.log_file, env=env, cwd=self.data_dir)

    def prepare(self) -> None:
        self.write_config()
        # the stamp remembers which admin credentials were applied — as an HMAC keyed by the secret, not the password
        admin = hmac.new(self.secret_key().encode(), f"{self.conf.admin_user}\0{self.conf.admin_password}".encode(),
                         hashlib.sha256).hexdigest()
        want = f"{SUPERSET_VERSION}\n{admin}"
        try:
            have = self.init_stamp.read_text()
        except OSError:
            have = ""
        if have.split("\n")[0] != SUPERSET_VERSION:
            self._superset("db", "upgrade")
            self._superset("init")
        fix_sqlite_dataset_uniqueness(self.metadata_db)
        if have != want:
            self._ensure_admin()
        self.init_stamp.write_text(want)

    def _ensure_admin(self) -> None:
        """Create the admin, or set its password when it exists (so the environment always wins). The password
        travels on the helper's stdin — never in its arguments (``ps``), a file or the log."""
        code = (
            "import sys\n"
            "from superset.app import create_app\n"
            "app = create_app()\n"
            "with app.app_context():\n"
            "    from superset import security_manager as sm\n"
            "    from superset.extensions import db\n"
            "    user, password = sys.argv[1], sys.stdin.read()\n"
            "    found = sm.find_user(username=user)\n"
            "    if found is None:\n"
            "        role = sm.find_role('Admin')\n"
            "        ok = sm.add_user(user, 'Superset', 'Admin', user + '@tv-platform.local', role,\n"
            "                         password=password)\n"
            "        if not ok: sys.exit('could not create the admin user')\n"
            "        print('created admin', user)\n"
            "    else:\n"
            "        sm.reset_password(found.id, password)\n"
            "        print('admin', user, 'exists; password set from the environment')\n"
            "    db.session.commit()\n"
        )
        env = {**os.environ, **self.process_env()}
        argv = [str(self.bin / "python"), "-c", code, self.conf.admin_user]
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ ensure admin {self.conf.admin_user!r}\n".encode())
            log.flush()
            proc = subprocess.run(argv, input=self.conf.admin_password.encode(), stdout=log, stderr=subprocess.STDOUT,
                                  env=env, cwd=self.data_dir)
        if proc.returncode != 0:
            raise StackError(self.name, f"creating the admin user {self.conf.admin_user!r} failed", self.log_file)

    # ---- run -----------------------------------------------------------------------------------------------------
    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            str(self.bin / "gunicorn"),
            "--bind", f"{self.conf.host}:{self.conf.port}",
            "--workers", "1",            # one process: chDB admits one process at a time, and it keeps memory modest
            "--worker-class", "gthread",
            "--threads", "8",
            "--timeout", "180",
            "--graceful-timeout", "20",
            # chDB leaks ~2.5 MB per open/close of the engine (one per ClickHouse chart query, measured): a fresh
            # worker every 120-150 requests keeps it under ~1 GB instead of growing (a recycle pauses ~6 s)
            "--max-requests", "120",
            "--max-requests-jitter", "30",
            "--limit-request-line", "0",
            "--limit-request-field_size", "0",
            "--access-logfile", "-",
            "superset.app:create_app()",
        ]
        return argv, self.process_env()

    def ready(self) -> bool:
        import requests

        r = requests.get(f"{self.conf.url}/health", timeout=3)
        return r.status_code == 200 and r.text.strip() == "OK"

    def after_ready(self) -> None:
        if self.import_bundle:
            import_bundle(self.settings, self.conf)

    def status(self) -> dict[str, Any]:
        pid = self.recorded_pid()
        up = False
        if pid:
            try:
                up = self.ready()
            except Exception:  # noqa: BLE001
                up = False
        return {"state": "up" if up else ("starting" if pid else "down"), "pid": pid, "memory_mb": self.memory_mb(),
                "url": self.conf.url, "installed": self.installed()}


def fix_sqlite_dataset_uniqueness(db_path: Path) -> bool:
    """Let two databases each have a dataset over a table of the same name (both warehouses have ``channel_rating``).

    Superset's migrations replace the first schema's ``UNIQUE (table_name)`` on ``tables`` by a key over (database,
    catalog, schema, table) — but SQLite cannot drop a constraint, so on SQLite metadata the old one stays and the
    second ``channel_rating`` dataset fails with "UNIQUE constraint failed: tables.table_name". This rebuilds the table
    the way SQLite documents for schema changes (new table, copy, drop, rename) with the intended key instead.
    Idempotent; returns True when it changed something. Superset must not be running."""
    import sqlite3

    if not db_path.exists():
        return False
    con = sqlite3.connect(db_path, isolation_level=None)
    try:
        row = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tables'").fetchone()
        if row is None:
            return False
        new_sql, n = re.subn(r",\s*UNIQUE \(table_name\)", "", row[0])
        if not n:
            return False
        columns = ", ".join(f'"{r[1]}"' for r in con.execute("PRAGMA table_info('tables')"))
        indexes = [r[0] for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tables' AND sql IS NOT NULL")]
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("BEGIN")
        try:
            con.execute(new_sql.replace('CREATE TABLE "tables"', 'CREATE TABLE "tables__tvp"', 1))
            con.execute(f'INSERT INTO "tables__tvp" ({columns}) SELECT {columns} FROM "tables"')
            con.execute('DROP TABLE "tables"')
            con.execute('ALTER TABLE "tables__tvp" RENAME TO "tables"')
            for sql in indexes:
                con.execute(sql)
            con.execute('CREATE UNIQUE INDEX IF NOT EXISTS "uq_tables_database_catalog_schema_table" ON "tables" '
                        "(database_id, COALESCE(catalog, ''), COALESCE(schema, ''), table_name)")
            problems = con.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise StackError("superset", f"rebuilding the datasets table broke foreign keys: {problems[:3]}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return True
    finally:
        con.close()


def _base_python() -> str:
    """The interpreter the platform's virtualenv was made from (Superset gets a virtualenv of its own)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if Path(base).exists() else (shutil.which("python3.11") or shutil.which("python3") or sys.executable)


# ---------------------------------------------------------------------------------------------------------------------
# the bundle
# ---------------------------------------------------------------------------------------------------------------------
def _yaml():
    import yaml

    return yaml


def load_bundle(root: Path = BUNDLE_DIR) -> dict[str, dict[str, Any]]:
    """Every YAML file of the bundle, keyed by its path relative to ``root`` (``databases/x.yaml``, ...)."""
    yaml = _yaml()
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] not in ("databases", "datasets", "charts", "dashboards") and rel != "metadata.yaml":
            continue
        files[rel] = yaml.safe_load(path.read_text())
    if "metadata.yaml" not in files:
        raise StackError("superset", f"{root} is not a Superset bundle: metadata.yaml is missing")
    return files


def database_uri(settings: Settings, which: str) -> tuple[str, str | None]:
    """(SQLAlchemy URI with the password masked, the password) of a warehouse, from the platform's settings."""
    if which == "greenplum":
        uri = (f"postgresql+psycopg2://{quote(settings.gp_reader_user, safe='')}:{MASK}@{settings.gp_host}:"
               f"{settings.gp_port}/{quote(settings.gp_database, safe='')}")
        return uri, settings.gp_reader_password
    from urllib.parse import unquote, urlparse

    from tv_platform.stack.clickhouse import chdb_path, is_chdb

    url, database = settings.clickhouse_url, settings.clickhouse_database
    if is_chdb(url):
        path = chdb_path(url)
        if path is None:
            raise StackError("superset", "an in-memory chDB (chdb://memory) cannot be shared with Superset")
        return f"clickhousedb:///{database}?interface=chdb&path={quote(str(path), safe='/')}", None
    parsed = urlparse(url)
    secure = parsed.scheme == "https"
    port = parsed.port or (8443 if secure else 8123)
    user = unquote(parsed.username or "default")
    password = unquote(parsed.password) if parsed.password is not None else ""
    uri = f"clickhousedb://{quote(user, safe='')}:{MASK}@{parsed.hostname}:{port}/{database}"
    if secure:
        uri += "?secure=true"
    return uri, password


def render_bundle(settings: Settings, root: Path = BUNDLE_DIR) -> tuple[bytes, dict[str, str]]:
    """The bundle as the zip Superset imports, adapted to the settings; and the passwords to send along with it.

    The databases' URIs come from the settings (host, port, database, reader role; chDB path or ClickHouse server) and
    the datasets' schemas from ``TVP_GP_SCHEMA`` / ``TVP_CLICKHOUSE_DATABASE``; nothing else changes. The metadata type
    becomes ``assets`` (the importer that overwrites every object, see the module doc)."""
    yaml = _yaml()
    files = load_bundle(root)
    passwords: dict[str, str] = {}
    db_kind: dict[str, str] = {}
    for rel, doc in files.items():
        if rel.startswith("databases/"):
            kind = "clickhouse" if doc["sqlalchemy_uri"].startswith("clickhouse") else "greenplum"
            uri, password = database_uri(settings, kind)
            doc["sqlalchemy_uri"] = uri
            db_kind[doc["uuid"]] = kind
            if password:
                passwords[rel] = password
    for rel, doc in files.items():
        if rel.startswith("datasets/"):
            kind = db_kind[doc["database_uuid"]]
            doc["schema"] = settings.gp_schema if kind == "greenplum" else settings.clickhouse_database
    files["metadata.yaml"] = {**files["metadata.yaml"], "type": "assets"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, doc in files.items():
            zf.writestr(f"tv_platform_bundle/{rel}", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return buf.getvalue(), passwords


def import_bundle(settings: Settings | None = None, conf: SupersetSettings | None = None,
                  root: Path = BUNDLE_DIR) -> dict[str, Any]:
    """Import (overwrite) the bundle into the running Superset; returns what it now holds."""
    settings = settings or get_settings()
    conf = conf or SupersetSettings.from_env()
    payload, passwords = render_bundle(settings, root)
    client = SupersetClient(conf)
    client.import_assets(payload, passwords)
    return {"dashboards": [d["dashboard_title"] for d in client.dashboards()], "charts": len(client.charts())}


# ---------------------------------------------------------------------------------------------------------------------
# the REST API
# ---------------------------------------------------------------------------------------------------------------------
class SupersetClient:
    """A logged-in session on Superset's REST API (JWT bearer + CSRF token) and, for browsers, its web session."""

    def __init__(self, conf: SupersetSettings | None = None, timeout: float = 120.0):
        import requests

        self.conf = conf or SupersetSettings.from_env()
        self.base = self.conf.url
        self.timeout = timeout
        self.http = requests.Session()
        r = self.http.post(f"{self.base}/api/v1/security/login", timeout=timeout, json={
            "username": self.conf.admin_user, "password": self.conf.admin_password, "provider": "db", "refresh": False})
        if r.status_code != 200:
            raise StackError("superset",
                             f"login as {self.conf.admin_user!r} failed: HTTP {r.status_code} {r.text[:200]}")
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        r = self.http.get(f"{self.base}/api/v1/security/csrf_token/", timeout=timeout)
        r.raise_for_status()
        self.http.headers["X-CSRFToken"] = r.json()["result"]
        self.http.headers["Referer"] = self.base

    def _check(self, r, what: str):
        if r.status_code >= 400:
            raise StackError("superset", f"{what}: HTTP {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    def get(self, path: str, **params) -> Any:
        return self._check(self.http.get(f"{self.base}{path}", params=params or None, timeout=self.timeout), path)

    def post(self, path: str, payload: Any) -> Any:
        return self._check(self.http.post(f"{self.base}{path}", json=payload, timeout=self.timeout), path)

    def import_assets(self, payload: bytes, passwords: dict[str, str]) -> None:
        r = self.http.post(
            f"{self.base}/api/v1/assets/import/", timeout=self.timeout,
            files={"bundle": ("tv_platform_bundle.zip", payload, "application/zip")},
            data={"passwords": json.dumps(passwords), "overwrite": "true"},
        )
        if r.status_code != 200:
            # Superset's message may echo the config it refused, never the passwords (they are not in the files)
            raise StackError("superset", f"importing the bundle failed: HTTP {r.status_code} {r.text[:1500]}")

    def _list(self, path: str, columns: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            q = "(columns:!(" + ",".join(columns) + f"),page:{page},page_size:100)"
            res = self.get(path, q=q)
            out.extend(res["result"])
            if len(out) >= res["count"] or not res["result"]:
                return out
            page += 1

    def dashboards(self) -> list[dict[str, Any]]:
        return self._list("/api/v1/dashboard/", ["id", "uuid", "dashboard_title", "slug"])

    def charts(self) -> list[dict[str, Any]]:
        return self._list("/api/v1/chart/", ["id", "uuid", "slice_name", "viz_type"])

    def dashboard_charts(self, id_or_slug: str | int) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/dashboard/{id_or_slug}/charts")["result"]

    def chart_data(self, chart_id: int) -> dict[str, Any]:
        """GET /api/v1/chart/<id>/data — runs the chart's saved query context."""
        return self.get(f"/api/v1/chart/{chart_id}/data/", format="json", type="full")

    def web_session_cookie(self) -> str:
        """The ``session`` cookie of a browser login through the login form (for a headless browser)."""
        import requests

        web = requests.Session()
        page = web.get(f"{self.base}/login/", timeout=self.timeout)
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
            r'"csrf_token"\s*:\s*"([^"]+)"', page.text)
        data = {"username": self.conf.admin_user, "password": self.conf.admin_password}
        if match:
            data["csrf_token"] = match.group(1)
        r = web.post(f"{self.base}/login/", data=data, timeout=self.timeout, allow_redirects=False)
        cookie = web.cookies.get("session")
        if r.status_code not in (302, 303) or not cookie:
            raise StackError("superset", f"the login form refused {self.conf.admin_user!r}: HTTP {r.status_code}")
        check = web.get(f"{self.base}/api/v1/me/", timeout=self.timeout)
        if check.status_code != 200:
            raise StackError("superset", f"the web session is not logged in: HTTP {check.status_code}")
        return cookie


# ---------------------------------------------------------------------------------------------------------------------
# headless Chromium over the DevTools protocol (a pipe: --remote-debugging-pipe, fds 3 and 4)
# ---------------------------------------------------------------------------------------------------------------------
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(progress: Callable[[str], None] = print) -> str:
    """The Chromium binary; installs Debian's ``chromium`` with apt-get when it is missing (root only)."""
    found = chromium_binary()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError("chromium", "no Chromium found: install it (Debian: apt-get install chromium)")
    progress("chromium: installing Debian's chromium package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "fonts-dejavu-core"], env=env,
                          capture_output=True, text=True)
    found = chromium_binary()
    if proc.returncode != 0 or not found:
        raise StackError("chromium", f"apt-get install chromium failed: {(proc.stderr or proc.stdout)[-300:]}")
    return found


def _high_fd(fd: int, low: int = 10) -> int:
    """The same pipe end on a descriptor >= ``low`` (close-on-exec), so it cannot collide with fds 3 and 4."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (NUL-separated JSON messages on fds 3/4)."""

    def __init__(self, binary: str | None = None, width: int = 1600, height: int = 1000):
        import tempfile

        self.binary = binary or ensure_chromium()
        self.profile = tempfile.mkdtemp(prefix="tvp-chromium-")
        # two pipes; Chromium reads commands on fd 3 and writes replies on fd 4. The child's ends are moved to fds
        # >= 10 and wired to 3/4 by a tiny Python trampoline that then execs Chromium (no preexec_fn: the caller
        # may have threads; no shell: dash cannot redirect fds above 9).
        to_child_r, self._to_child = (_high_fd(fd) for fd in os.pipe())
        self._from_child, from_child_w = (_high_fd(fd) for fd in os.pipe())
        argv = [self.binary, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        wire = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen([sys.executable, "-c", wire, str(to_child_r), str(from_child_w), *argv],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(to_child_r, from_child_w), start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.send("Browser.getVersion", timeout=30)

    # -- protocol ----------------------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._to_child, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def new_page(self, width: int = 1600, height: int = 1000) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Network"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Page:
    browser: Chromium
    session: str
    target_id: str = ""

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        timeout=timeout)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')[:300]}")
        return res.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 60) -> None:
        res = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if res.get("errorText"):
            raise RuntimeError(f"navigating to {url}: {res['errorText']}")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        data = self.send("Page.captureScreenshot", params, timeout=120)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


# Recorded in the page before Superset's code runs: every /api/v1/chart/data response (status, rows, errors).
_FETCH_HOOK = r"""
(() => {
  window.__tvpChartData = [];
  const orig = window.fetch;
  window.fetch = async function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || '';
    const res = await orig.apply(this, arguments);
    if (url.includes('/api/v1/chart/data')) {
      let body = null;
      try { body = init && init.body ? JSON.parse(init.body) : null; } catch (e) {}
      const entry = {url, status: res.status, slice_id: body && body.form_data ? body.form_data.slice_id : null,
                     viz_type: body && body.form_data ? body.form_data.viz_type : null, rows: [], errors: [],
                     query_context: body};
      window.__tvpChartData.push(entry);
      res.clone().json().then(j => {
        for (const r of (j.result || [])) { entry.rows.push(r.rowcount); if (r.error) entry.errors.push(r.error); }
        if (j.message) entry.errors.push(typeof j.message === 'string' ? j.message : JSON.stringify(j.message));
        if (j.errors) for (const e of j.errors) entry.errors.push(e.message || JSON.stringify(e));
        entry.done = true;
      }).catch(e => { entry.errors.push('unreadable response: ' + e); entry.done = true; });
    }
    return res;
  };
})();
"""

# The state of every chart holder on a dashboard page.
_CHART_STATE = r"""
(() => {
  const holders = [...document.querySelectorAll('[data-test="dashboard-component-chart-holder"]')]
    .filter(h => h.querySelector('[data-test-chart-id]'));
  const charts = holders.map(h => {
    const titleEl = h.querySelector('[data-test="editable-title"], .header-title, .editable-title');
    const title = (titleEl || {}).textContent || '';
    const idEl = h.querySelector('[data-test-chart-id]');
    const idMatch = idEl ? idEl.getAttribute('data-test-chart-id') : null;
    const errorEl = h.querySelector(
      '.ant-alert-error, [data-test="error-alert"], [data-test="errorMessage"], .error-alert');
    const text = h.innerText || '';
    const loading = !!h.querySelector('.loading, [data-test="loading-indicator"], [aria-label="Loading"]');
    const empty = !!h.querySelector('.empty-state, [data-test="empty-state"]')
      || /No results were returned/i.test(text);
    const drawn = !!h.querySelector('canvas, svg, table');
    return {title: title.trim(), chart_id: idMatch ? Number(idMatch) : null, loading, empty, drawn,
            error: errorEl ? (errorEl.innerText || 'error').slice(0, 500) : null};
  });
  const pageErrors = [...document.querySelectorAll('.ant-alert-error, [data-test="toast-container"] .toast--danger')]
    .filter(e => !e.closest('[data-test="dashboard-component-chart-holder"]')).map(e => e.innerText.slice(0, 300));
  return {url: location.href, title: document.title, charts, pageErrors,
          data: (window.__tvpChartData || []).map(d => ({slice_id: d.slice_id, viz_type: d.viz_type, status: d.status,
                                                          rows: d.rows, errors: d.errors, done: !!d.done}))};
})()
"""


@dataclass
class DashboardRender:
    slug: str
    url: str
    screenshot: Path | None
    seconds: float
    charts: list[dict[str, Any]]
    data: list[dict[str, Any]]
    page_errors: list[str]
    expected: list[int] = field(default_factory=list)
    timed_out: bool = False
    query_contexts: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        out = [f"page: {e}" for e in self.page_errors]
        if self.timed_out:
            out.append(f"the dashboard did not settle within the timeout ({self.seconds:.0f}s)")
        seen = {c["chart_id"] for c in self.charts}
        out += [f"chart {cid}: not on the page" for cid in self.expected if cid not in seen]
        for c in self.charts:
            if c["error"]:
                out.append(f"chart {c['title']!r}: error {c['error']!r}")
            elif c["loading"]:
                out.append(f"chart {c['title']!r}: still loading")
            elif c["empty"]:
                out.append(f"chart {c['title']!r}: no results")
            elif not c["drawn"]:
                out.append(f"chart {c['title']!r}: nothing drawn")
        for d in self.data:
            what = f"chart data for slice {d.get('slice_id')} ({d.get('viz_type')})"
            if d["status"] != 200 or d["errors"]:
                out.append(f"{what}: HTTP {d['status']} {d['errors']}")
            elif not d["rows"] or not any(d["rows"]):
                out.append(f"{what}: no rows")
        return out


SELECT_FILTER_COLUMNS = {"NATIVE_FILTER-channel": "channel_name", "NATIVE_FILTER-series": "series"}


def filter_state(filters: dict[str, Any]) -> dict[str, Any]:
    """A dashboard ``dataMask`` setting native filter values: ``{"NATIVE_FILTER-channel": ["A", "B"]}`` for a select
    filter on ``channel_name`` (``NATIVE_FILTER-series``: on ``series``), ``{"NATIVE_FILTER-date_range": "2023-09-23 :
    2023-09-24"}`` for the time range."""
    mask: dict[str, Any] = {}
    for fid, value in filters.items():
        if isinstance(value, str):  # a time range
            extra: dict[str, Any] = {"time_range": value}
            state: dict[str, Any] = {"value": value}
        else:
            column = SELECT_FILTER_COLUMNS.get(fid, "channel_name")
            extra = {"filters": [{"col": column, "op": "IN", "val": list(value)}]}
            state = {"value": list(value), "label": ", ".join(value)}
        mask[fid] = {"id": fid, "extraFormData": extra, "filterState": state, "ownState": {}}
    return mask


def render_dashboard(slug: str, screenshot: Path | None = None, conf: SupersetSettings | None = None,
                     browser: Chromium | None = None, data_mask: dict[str, Any] | None = None, width: int = 1600,
                     height: int = 3200, timeout: float = 120.0) -> DashboardRender:
    """Open a dashboard logged in, wait until every chart has drawn or failed, and report (and screenshot) it.

    The viewport is tall from the start (``height``) so the whole dashboard renders at once and no resize re-lays
    the charts out before the screenshot. ``data_mask`` (see :func:`filter_state`) opens it with native filter
    values set, through a permalink — as a user sharing a filtered dashboard would."""
    conf = conf or SupersetSettings.from_env()
    client = SupersetClient(conf)
    expected = {c["id"] for c in client.dashboard_charts(slug)}
    url = f"{conf.url}/superset/dashboard/{slug}/?standalone=1"
    if data_mask:
        dash_id = client.get(f"/api/v1/dashboard/{slug}")["result"]["id"]
        link = client.post(f"/api/v1/dashboard/{dash_id}/permalink",
                           {"dataMask": data_mask, "activeTabs": [], "anchor": "", "urlParams": []})
        url = f"{link['url']}?standalone=1"
    cookie = client.web_session_cookie()
    own = browser is None
    browser = browser or Chromium()
    t0 = time.monotonic()
    shot = None
    try:
        page = browser.new_page(width=width, height=height)
        page.send("Network.setCookie", {"name": "session", "value": cookie, "url": conf.url, "httpOnly": True})
        page.send("Page.addScriptToEvaluateOnNewDocument", {"source": _FETCH_HOOK})
        page.navigate(url)
        state = _wait_settled(page, expected, timeout)
        if screenshot:
            content = page.evaluate("document.documentElement.scrollHeight") or height
            if content > height:  # taller than the viewport: grow it, and let the charts lay out again
                page.send("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": int(content), "deviceScaleFactor": 1, "mobile": False})
                state = _wait_settled(page, expected, timeout)
            shot = page.screenshot(screenshot, full_page=False)
        contexts = page.evaluate("(window.__tvpChartData || []).map(d => [d.slice_id, d.query_context])") or []
        try:
            browser.send("Target.closeTarget", {"targetId": page.target_id}, timeout=10)
        except Exception:  # noqa: BLE001
            pass
    finally:
        if own:
            browser.close()
    return DashboardRender(slug=slug, url=url, screenshot=shot, seconds=time.monotonic() - t0,
                           charts=state.get("charts", []), data=state.get("data", []),
                           page_errors=state.get("pageErrors", []), expected=sorted(expected),
                           timed_out=bool(state.get("timed_out")),
                           query_contexts={int(k): v for k, v in contexts if k is not None})


def _wait_settled(page: "Page", expected: set[int], timeout: float, quiet: float = 2.0) -> dict[str, Any]:
    """Poll the page until every expected chart has drawn, failed or come back empty, and every chart-data request
    has its answer — then ``quiet`` seconds more (ECharts' entry animation). Returns the last state seen."""
    deadline = time.monotonic() + timeout
    settled_since = None
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        state = page.evaluate(_CHART_STATE)
        charts = {c["chart_id"]: c for c in state["charts"] if c["chart_id"] is not None}
        done = (expected <= set(charts)
                and all(not c["loading"] and (c["drawn"] or c["error"] or c["empty"]) for c in charts.values())
                and all(d["done"] for d in state["data"])
                and expected <= {d.get("slice_id") for d in state["data"]})
        if done:
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= quiet:
                return state
        else:
            settled_since = None
    state["timed_out"] = True
    return state


# ---------------------------------------------------------------------------------------------------------------------
# command line: tv-platform superset up|down|status|import|screenshot
# ---------------------------------------------------------------------------------------------------------------------
def add_superset_parser(sub) -> None:
    p = sub.add_parser("superset",
                       help="Superset with the dashboards of superset_exports/ (up|down|status|import|screenshot)")
    act = p.add_subparsers(dest="superset_action", required=True)
    up = act.add_parser("up", help="install (own virtualenv), initialize, start on 127.0.0.1:8088, import the bundle")
    up.add_argument("--no-import", action="store_true", help="do not (re)import superset_exports/")
    act.add_parser("down", help="stop the Superset that `up` started")
    act.add_parser("status", help="state, pid, memory and URL")
    act.add_parser("import", help="(re)import superset_exports/ into the running Superset")
    sc = act.add_parser("screenshot", help="render every dashboard in headless Chromium and save screenshots")
    sc.add_argument("--out", default="test-artifacts", help="directory for the PNG files (default: test-artifacts)")


def superset_up(settings: Settings | None = None, import_bundle: bool = True,
                progress: Callable[[str], None] = print) -> SupersetService:
    """``tv-platform superset up`` as a function (the demo calls it): install, initialize, start, import. Idempotent."""
    svc = SupersetService(settings or get_settings(), import_bundle=import_bundle)
    t0 = time.monotonic()
    svc.install(progress)
    progress(f"superset: {'running' if svc.running() else 'starting'}")
    svc.start()
    progress(f"superset: up in {time.monotonic() - t0:.0f}s — {svc.conf.url} (user {svc.conf.admin_user!r})")
    if import_bundle:
        for d in SupersetClient(svc.conf).dashboards():
            progress(f"  {d['dashboard_title']:<40} {svc.conf.url}/superset/dashboard/{d['slug'] or d['id']}/")
    return svc


def superset_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    svc = SupersetService(settings)
    action = args.superset_action
    if action == "up":
        superset_up(settings, import_bundle=not args.no_import, progress=lambda m: print(m, flush=True))
        return 0
    if action == "down":
        print("superset: stopped" if svc.stop() else "superset: was not running")
        return 0
    if action == "status":
        st = svc.status()
        print(f"{'service':<12}{'state':<10}{'pid':>8}{'RSS MiB':>10}  endpoint")
        print(f"{'superset':<12}{st['state']:<10}{st['pid'] or '-':>8}{st['memory_mb']:>10.0f}  {st['url']}")
        return 0 if st["state"] == "up" else 3
    if action == "import":
        res = import_bundle(settings, svc.conf)
        print(f"imported: {', '.join(res['dashboards'])} ({res['charts']} charts)")
        return 0
    if action == "screenshot":
        out = Path(args.out)
        client = SupersetClient(svc.conf)
        code = 0
        with Chromium() as browser:
            for d in client.dashboards():
                slug = d["slug"] or str(d["id"])
                res = render_dashboard(slug, out / f"superset-{slug}.png", svc.conf, browser=browser)
                print(f"{slug}: {len(res.charts)} charts in {res.seconds:.0f}s -> {res.screenshot}")
                for problem in res.problems:
                    print(f"  {problem}")
                    code = 1
        return code
    return 2
