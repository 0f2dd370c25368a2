"""Superset the service: its own virtualenv, its metadata and secrets under the state directory, gunicorn.

``tv-platform superset up`` (:func:`superset_up`) does everything, idempotently:

1. **install** — a virtualenv of its own at ``<TVP_CACHE_DIR>/superset-venv`` with exact pins (:data:`PINS`): Superset
   6.1 plus what its wheel lacks (``rich``, ``cachetools``, ``flask-caching==2.3.1``), the warehouse drivers
   (psycopg2 for Greenplum/PostgreSQL, clickhouse-connect with chDB for ClickHouse — the platform's versions, since
   the chDB data directory is shared). A stamp file holding the pins makes a second run a no-op.
2. **prepare** — ``<TVP_STATE_DIR>/superset/`` (mode 0700): ``superset_config.py`` (SQLite metadata ``superset.db``),
   a ``SECRET_KEY`` (``TVP_SUPERSET_SECRET_KEY``, else generated once into ``secret_key``, mode 0600, never in the
   repo), ``superset db upgrade`` + ``superset init`` (stamped by version) and the admin user
   ``TVP_SUPERSET_ADMIN_USER`` with ``TVP_SUPERSET_ADMIN_PASSWORD`` — or, when that is unset, a password generated
   once into ``admin_password`` (mode 0600) and printed once (see :mod:`.conf`). No default password.
3. **start** — gunicorn, one worker process with threads, on ``127.0.0.1:8088`` (``TVP_SUPERSET_PORT``); pid file
   ``<state>/superset/superset.pid`` (with the metadata), log ``<state>/logs/superset.log`` (the conventions of ``tv_platform/stack/base.py``).
   One process on purpose: the embedded ClickHouse engine (chDB) admits a single process at a time.
4. **import** — the bundle (:mod:`.bundle`).

The ClickHouse database is ``clickhousedb:///<db>?interface=chdb&path=<dir>`` locally: clickhouse-connect's SQLAlchemy
dialect passes ``interface``/``path`` to its client, which embeds chDB in the Superset process. Superset opens a
connection per query (``NullPool``), so the engine is released between queries and Dagster's loads can take it; a
query that arrives while a load holds the directory waits for it (``CHDB_WAIT_SECONDS``, a hook in the generated
``superset_config.py``) and fails with "Unable to open the chdb engine" only after that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tv_platform.engines.superset.conf import SupersetSettings, read_private, write_private
from tv_platform.settings import Settings, get_settings
from tv_platform.stack.base import Service, StackError, run_checked

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

CHDB_WAIT_SECONDS = 30
"""How long a Superset query waits for the embedded ClickHouse while another process (a load) holds it."""


_CONFIG_TEMPLATE = '''\
# Written by tv-platform (tv_platform/stack/superset.py) at every start: edit that file, not this one.
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
    conf: SupersetSettings | None = None  # None: from the environment and this service's settings
    import_bundle: bool = True
    generated_password: str | None = field(default=None, repr=False)  # set when this start generated it

    def __post_init__(self) -> None:
        if self.conf is None:
            self.conf = SupersetSettings.from_env(self.settings)

    # ---- paths -------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.conf.data_dir

    @property
    def pid_file(self) -> Path:
        """With the metadata: one Superset per data directory, whichever state directory the caller has."""
        return self.data_dir / "superset.pid"

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
        key = read_private(path)
        if key is None:
            key = secrets.token_urlsafe(48)
            write_private(path, key)
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
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = _CONFIG_TEMPLATE.format(sqlite_uri=f"sqlite:///{self.metadata_db}", data_dir=str(self.data_dir),
                                       chdb_wait=CHDB_WAIT_SECONDS)
        if not self.config_file.exists() or self.config_file.read_text() != text:
            self.config_file.write_text(text)

    def _superset(self, *args: str) -> None:
        env = {**os.environ, **self.process_env()}
        run_checked(self.name, [str(self.bin / "superset"), *args], self.log_file, env=env, cwd=self.data_dir)

    def prepare(self) -> None:
        self.write_config()
        self.generated_password = self.conf.ensure_admin_password()
        want = self._init_stamp_text()
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

    def _init_stamp_text(self) -> str:
        """The version initialized and which admin credentials were applied — as an HMAC keyed by the secret, not the
        password."""
        admin = hmac.new(self.secret_key().encode(), f"{self.conf.admin_user}\0{self.conf.admin_password}".encode(),
                         hashlib.sha256).hexdigest()
        return f"{SUPERSET_VERSION}\n{admin}"

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
        generated = self.conf.ensure_admin_password()
        if generated:  # running since before it had a password (an older `superset up`): its admin gets this one
            self.generated_password = generated
            self._ensure_admin()
            self.init_stamp.write_text(self._init_stamp_text())
        if self.import_bundle:
            from tv_platform.engines.superset.bundle import import_bundle

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



def superset_up(settings: Settings | None = None, import_bundle: bool = True, conf: SupersetSettings | None = None,
                progress: Callable[[str], None] = print) -> SupersetService:
    """``tv-platform superset up`` as a function (the demo calls it): install, initialize, start, import. Idempotent.
    A password generated by this start is shown once, here; afterwards it is only in its file."""
    from tv_platform.engines.superset.client import SupersetClient

    svc = SupersetService(settings or get_settings(), conf=conf, import_bundle=import_bundle)
    t0 = time.monotonic()
    svc.install(progress)
    progress(f"superset: {'running' if svc.running() else 'starting'}")
    svc.start()
    progress(f"superset: up in {time.monotonic() - t0:.0f}s — {svc.conf.url} (user {svc.conf.admin_user!r})")
    if svc.generated_password:
        progress(f"superset: generated the admin password (shown only this once; kept in {svc.conf.password_file}, "
                 f"mode 0600): {svc.generated_password}")
    elif not svc.conf.admin_password_env:
        progress(f"superset: the admin password is in {svc.conf.password_file}")
    if import_bundle:
        for d in SupersetClient(svc.conf).dashboards():
            progress(f"  {d['dashboard_title']:<40} {svc.conf.url}/superset/dashboard/{d['slug'] or d['id']}/")
    return svc
