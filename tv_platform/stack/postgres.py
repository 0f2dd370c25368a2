"""PostgreSQL 15 (Debian's packages) standing in for Greenplum, and holding Dagster's run storage.

The service runs its *own* cluster under ``<state_dir>/data/postgres/pgdata`` (never Debian's system cluster), listening on
``127.0.0.1:<TVP_GP_PORT>`` only, with its Unix socket in ``<state_dir>/data/postgres/socket`` (mode 0700).

Authentication: the admin (``TVP_PG_ADMIN_USER``) has no password and is only reachable through that private socket
(``trust``, which is safe because only root and the server's own user can enter the 0700 directory); every TCP
connection needs a password (``scram-sha-256``).

PostgreSQL refuses to run as root. When the stack runs as root, the data directory is handed to the ``postgres`` system
user and ``initdb``/``postgres`` run through ``setpriv`` (which *execs*, so the recorded pid is the postmaster itself;
``runuser`` would stay in between and SIGKILL the server two seconds into a shutdown). If the state dir sits below a
directory that user cannot enter (``/root`` is 0700 on Debian), the server additionally gets the single ambient capability
``CAP_DAC_READ_SEARCH`` — enough to reach its data, no permission bits on the machine are changed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform.stack.base import Service, StackError, group_alive, pid_alive, run_checked

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
SYSTEM_USER = "postgres"  # the Debian system user that owns the cluster when we run as root

# Unix socket paths are limited to 107 bytes (sun_path).
_SUN_PATH_MAX = 107


@dataclass
class PostgresService(Service):
    name: str = "postgres"
    start_timeout: float = 60.0

    # ---- paths -------------------------------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "socket"

    def ports(self) -> list[int]:
        return [self.settings.gp_port]

    def endpoints(self) -> dict[str, str]:
        s = self.settings
        return {
            "postgres (warehouse, loader)": f"postgresql://{s.gp_loader_user}@127.0.0.1:{s.gp_port}/{s.gp_database}",
            "postgres (warehouse, reader)": f"postgresql://{s.gp_reader_user}@127.0.0.1:{s.gp_port}/{s.gp_database}",
            "postgres (dagster)": f"postgresql://{s.dagster_pg_user}@127.0.0.1:{s.gp_port}/{s.dagster_pg_database}",
            "postgres (admin socket)": f"psql -h {self.socket_dir} -p {s.gp_port} -U {s.pg_admin_user} postgres",
        }

    # ---- install -----------------------------------------------------------------------------------------------
    def install(self, progress: Callable[[str], None]) -> None:
        if (PG_BIN / "postgres").exists() and (PG_BIN / "initdb").exists():
            return
        if os.geteuid() != 0:
            raise StackError(
                self.name, f"PostgreSQL {PG_VERSION} is not installed and installing needs root: "
                f"sudo apt-get install -y postgresql-{PG_VERSION}",
            )
        log = self.settings.logs_dir / "postgres-install.log"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        progress(f"postgres: installing postgresql-{PG_VERSION} with apt-get (first run only)")
        run_checked(self.name, ["apt-get", "update"], log, env=env)
        run_checked(self.name, ["apt-get", "install", "-y", "--no-install-recommends", f"postgresql-{PG_VERSION}"], log, env=env)
        if not (PG_BIN / "postgres").exists():
            raise StackError(self.name, f"apt-get installed postgresql-{PG_VERSION} but {PG_BIN / 'postgres'} is missing", log)
        # The package creates and (outside systemd) may start Debian's own cluster on 5432; it is not ours and would
        # take the port, so stop it again if the installation just started it.
        if shutil.which("pg_ctlcluster"):
            status = subprocess.run(["pg_ctlcluster", PG_VERSION, "main", "status"], capture_output=True)
            if status.returncode == 0:
                progress(f"postgres: stopping Debian's default cluster {PG_VERSION}/main that apt-get started")
                subprocess.run(["pg_ctlcluster", PG_VERSION, "main", "stop"], capture_output=True)

    # ---- running as the right user -----------------------------------------------------------------------------
    def _owner(self) -> pwd.struct_passwd | None:
        """The system user that owns the cluster when we are root (None when we are not root)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise StackError(
                self.name, f"running as root but there is no '{SYSTEM_USER}' system user to run PostgreSQL "
                f"(it comes with apt-get install postgresql-{PG_VERSION}; or run the stack as a normal user)",
            ) from None

    def _as_owner(self, argv: list[str]) -> list[str]:
        owner = self._owner()
        if owner is None:
            return argv
        prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"]
        if not _reachable_by(self.data_dir, owner):
            if not _has_bounding_cap(_CAP_DAC_READ_SEARCH):
                raise StackError(
                    self.name, f"the '{SYSTEM_USER}' user cannot reach {self.data_dir} (a parent directory is closed "
                    "to it) and this machine does not grant CAP_DAC_READ_SEARCH: set TVP_STATE_DIR to a directory "
                    "outside /root, or `chmod o+x` its parents",
                )
            prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        return prefix + ["--", *argv]

    def _give_to_owner(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(path, mode)

    def _write_owned(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        owner = self._owner()
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    # ---- prepare -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise StackError(
                self.name, f"PostgreSQL {PG_VERSION} is not installed ({PG_BIN / 'postgres'} missing): "
                f"run `tv-platform stack install` or apt-get install postgresql-{PG_VERSION}",
            )
        socket_path = self.socket_dir / f".s.PGSQL.{self.settings.gp_port}"
        if len(str(socket_path).encode()) > _SUN_PATH_MAX:
            raise StackError(
                self.name, f"the socket path {socket_path} is longer than {_SUN_PATH_MAX} bytes: use a shorter TVP_STATE_DIR"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_owner(self.socket_dir, 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._configure()
        self._clear_stale_lock()

    def _initdb(self) -> None:
        if self.pgdata.exists():  # a half-finished earlier attempt: initdb wants an empty directory
            shutil.rmtree(self.pgdata)
        self._give_to_owner(self.pgdata, 0o700)
        argv = [
            str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", self.settings.pg_admin_user,
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
        ]
        run_checked(self.name, self._as_owner(argv), self.log_file, cwd=self.data_dir)

    def _configure(self) -> None:
        conf = self.pgdata / "postgresql.conf"
        include = "include_if_exists = 'tv_platform.conf'"
        text = conf.read_text()
        if include not in text:
            with open(conf, "a") as f:
                f.write(f"\n# settings of the tv_platform stack (rewritten at every start)\n{include}\n")
        self._write_owned(self.pgdata / "tv_platform.conf", "\n".join([
            "# written by tv_platform.stack.postgres at every start; edits are lost",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.settings.gp_port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "unix_socket_permissions = 0700",
            "max_connections = 100",
            "shared_buffers = 128MB",
            "work_mem = 16MB",
            "maintenance_work_mem = 64MB",
            "effective_cache_size = 1GB",
            "max_wal_size = 512MB",
            "huge_pages = off",
            "ssl = off",
            "password_encryption = 'scram-sha-256'",
            "logging_collector = off",
            "log_destination = 'stderr'",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "log_min_duration_statement = 10000",
            "",
        ]))
        self._write_owned(self.pgdata / "pg_hba.conf", "\n".join([
            "# written by tv_platform.stack.postgres at every start; edits are lost",
            "# TYPE  DATABASE  USER  ADDRESS       METHOD",
            "local   all       all                 trust",  # the socket directory is 0700: root and the server only
            "host    all       all   127.0.0.1/32  scram-sha-256",
            "host    all       all   ::1/128       scram-sha-256",
            "",
        ]))

    def _clear_stale_lock(self) -> None:
        """Remove postmaster.pid left by a killed server (a live pid in it is left for postgres to complain about)."""
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if not pid_alive(pid):
            lock.unlink(missing_ok=True)

    # ---- run -----------------------------------------------------------------------------------------------------
    def command(self) -> tuple[list[str], dict[str, str]]:
        return self._as_owner([str(PG_BIN / "postgres"), "-D", str(self.pgdata)]), {"LC_ALL": "C.UTF-8"}

    def stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint, exit

    def stop(self, timeout: float = 30.0) -> bool:
        """Signal only the postmaster (it shuts its children down in order), then fall back to the group."""
        pid = self.recorded_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, self.stop_signal())
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.2)
        if group_alive(pid):  # did not finish: let the base class signal the group and SIGKILL what is left
            return super().stop(timeout=5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    # ---- protocol ------------------------------------------------------------------------------------------------
    def admin_connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=str(self.socket_dir), port=self.settings.gp_port, user=self.settings.pg_admin_user,
            dbname=dbname, connect_timeout=3,
        )

    def ready(self) -> bool:
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    def after_ready(self) -> None:
        """Idempotently create the roles, the warehouse database and schema, and Dagster's database."""
        from psycopg2 import sql

        s = self.settings
        try:
            conn = self.admin_connect()
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"cannot connect as {s.pg_admin_user} to provision: {exc}".splitlines()[0], self.log_file) from None
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                for role, password in (
                    (s.gp_loader_user, s.gp_loader_password),
                    (s.gp_reader_user, s.gp_reader_password),
                    (s.dagster_pg_user, s.dagster_pg_password),
                ):
                    _ensure_role(cur, role, password)
                _ensure_database(cur, s.gp_database, s.pg_admin_user)
                _ensure_database(cur, s.dagster_pg_database, s.dagster_pg_user)
                cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}, {}").format(
                    sql.Identifier(s.gp_database), sql.Identifier(s.gp_loader_user), sql.Identifier(s.gp_reader_user)))
            conn.close()
            conn = self.admin_connect(s.gp_database)
            conn.autocommit = True
            with conn.cursor() as cur:
                schema, loader, reader = (sql.Identifier(x) for x in (s.gp_schema, s.gp_loader_user, s.gp_reader_user))
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, loader))
                cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, loader))
                cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
                cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, reader))
                cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                    loader, schema, reader))
                for role in (loader, reader):
                    cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}, public").format(
                        role, sql.Identifier(s.gp_database), schema))
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"provisioning roles/databases failed: {exc}".splitlines()[0], self.log_file) from None
        finally:
            conn.close()


def _ensure_role(cur, role: str, password: str) -> None:
    from psycopg2 import sql

    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    # the password is kept in step with the settings at every start
    cur.execute(sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s").format(
        sql.Identifier(role)), (password,))


def _ensure_database(cur, database: str, owner: str) -> None:
    from psycopg2 import sql

    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    if cur.fetchone():
        cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(owner)))
    else:
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(database), sql.Identifier(owner)))


# ---- can the server's user reach its data? --------------------------------------------------------------------------
_CAP_DAC_READ_SEARCH = 2


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` may search every directory from / down to ``path`` (by the permission bits)."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _has_bounding_cap(cap: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False
