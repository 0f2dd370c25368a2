"""The cluster profile's Hive Metastore: the standalone metastore service (thrift) of Hive 4.0.1, backed by PostgreSQL.

Jars: ``org.apache.hive:hive-standalone-metastore-server:4.0.1`` with the PostgreSQL JDBC driver and the Hadoop client
(its warehouse is on HDFS), resolved by ``stack/jvm/hive-metastore/pom.xml``. The process is
``org.apache.hadoop.hive.metastore.HiveMetaStore`` with ``<state_dir>/data/hive-metastore/conf/metastore-site.xml``
first on the class path; it binds ``127.0.0.1:<port of TVP_HIVE_METASTORE_URI>`` only.

Its database is ``hive_metastore`` in the stack's PostgreSQL, owned by the role ``hive`` whose password is generated at
the first start and kept in ``<state_dir>/data/hive-metastore/db-password`` (mode 0600); no default password. The
schema is made once, before the first start, by Hive's own ``MetastoreSchemaTool -initSchema -dbType postgres`` from
``hive-schema-4.0.0.postgres.sql`` of the binary distribution (``...-4.0.1-bin.tar.gz``, also on Maven Central; the
server jar does not carry the scripts); the service verifies it at every start (``metastore.schema.verification``).
DataNucleus' ``autoCreateAll`` is not used: creating tables lazily, it deadlocks under concurrent requests.

Spark (the Connect server) is a metastore *client* of it, not through pyspark's built-in Hive 2.3.10 client but
through a Hive 4.0.1 client resolved from Maven (``stack/jvm/hive-client/pom.xml``, named by
``spark.sql.hive.metastore.version``/``.jars.path``) — see docs/deployment.md for what that pairing is proven to do.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from tv_platform.stack.base import Service, StackError, java_bin, log4j2_console, port_open
from tv_platform.stack.hdfs import _site_xml
from tv_platform.stack.maven import classpath, ensure_jars

DATABASE = "hive_metastore"
ROLE = "hive"
MAIN = "org.apache.hadoop.hive.metastore.HiveMetaStore"

LOG4J2 = log4j2_console("tv_platform/stack/hive_metastore.py", "%d{ISO8601} %-5p [%t] %c{2}: %m%n", {
    "org.apache.hadoop.hive.metastore.HiveMetaStore": "INFO", "DataNucleus": "ERROR"}, root="WARN")


def thrift_call(host: str, port: int, method: str, timeout: float = 5.0) -> int:
    """Call an argument-less method of the metastore's thrift service (binary protocol, unframed) and return the
    reply's message type (2 = REPLY, 3 = EXCEPTION). Enough to know the service answers its own protocol."""
    name = method.encode()
    request = struct.pack(">I", 0x80010001) + struct.pack(">i", len(name)) + name + struct.pack(">i", 1) + b"\x00"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        head = b""
        while len(head) < 8:
            chunk = sock.recv(8 - len(head))
            if not chunk:
                raise ConnectionError("the metastore closed the connection")
            head += chunk
    version = struct.unpack(">I", head[:4])[0]
    if version & 0xFFFF0000 != 0x80010000:
        raise ConnectionError(f"not a thrift binary reply (0x{version:08x})")
    return version & 0xFF


@dataclass
class HiveMetastoreService(Service):
    name: str = "hive-metastore"
    start_timeout: float = 180.0

    @property
    def port(self) -> int:
        uri = urlparse(self.settings.hive_metastore_uri)
        if uri.scheme != "thrift" or not uri.port:
            raise StackError(self.name, f"TVP_HIVE_METASTORE_URI is {self.settings.hive_metastore_uri!r}, not thrift://host:port")
        return uri.port

    @property
    def conf_dir(self) -> Path:
        return self.data_dir / "conf"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "db-password"

    def ports(self) -> list[int]:
        return [self.port]

    def endpoints(self) -> dict[str, str]:
        s = self.settings
        return {"hive metastore (thrift)": s.hive_metastore_uri,
                "hive metastore db": f"postgresql://{ROLE}@127.0.0.1:{s.gp_port}/{DATABASE}"}

    def install(self, progress: Callable[[str], None] = print) -> None:
        ensure_jars(self.settings, "hive-metastore", progress)

    def db_password(self) -> str:
        if not self.password_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        return self.password_file.read_text().strip()

    def _provision_database(self) -> None:
        from tv_platform.stack.postgres import PostgresService, _ensure_database, _ensure_role

        pg = PostgresService(self.settings)
        try:
            conn = pg.admin_connect()
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"PostgreSQL (its database) does not answer: {exc}".splitlines()[0]) from None
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                _ensure_role(cur, ROLE, self.db_password())
                _ensure_database(cur, DATABASE, ROLE)
        finally:
            conn.close()

    def site(self) -> dict[str, str]:
        s = self.settings
        return {
            "metastore.thrift.port": str(self.port),
            "metastore.thrift.bind.host": "127.0.0.1",
            "javax.jdo.option.ConnectionURL": f"jdbc:postgresql://127.0.0.1:{s.gp_port}/{DATABASE}",
            "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
            "javax.jdo.option.ConnectionUserName": ROLE,
            "javax.jdo.option.ConnectionPassword": self.db_password(),
            "metastore.schema.verification": "true",
            "metastore.warehouse.dir": s.hdfs_url.rstrip("/") + "/user/hive/warehouse",
            "fs.defaultFS": s.hdfs_url.rstrip("/"),
            "metastore.event.db.notification.api.auth": "false",
            "metastore.housekeeping.threads.on": "false",
            "metastore.compactor.initiator.on": "false",
            "metastore.server.min.threads": "4",
            "metastore.server.max.threads": "50",
            "dfs.client.block.write.replace-datanode-on-failure.best-effort": "true",
        }

    def prepare(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        if not port_open(self.settings.gp_port):
            raise StackError(self.name, f"PostgreSQL is not reachable on port {self.settings.gp_port}: start it first")
        self._provision_database()
        site = self.conf_dir / "metastore-site.xml"
        site.write_text(_site_xml(self.site()))
        os.chmod(site, 0o600)  # it holds the database password
        (self.conf_dir / "log4j2.properties").write_text(LOG4J2)
        if not self._schema_exists():
            from tv_platform.stack.base import run_checked

            home = self._distribution()
            run_checked(self.name, self._java("org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool",
                                              "-initSchema", "-dbType", "postgres"),
                        self.log_file, env={**os.environ, "METASTORE_HOME": str(home)}, cwd=self.data_dir)

    def _schema_exists(self) -> bool:
        from tv_platform.stack.postgres import PostgresService

        conn = PostgresService(self.settings).admin_connect(DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_tables WHERE tablename = 'VERSION'")
                return cur.fetchone() is not None
        finally:
            conn.close()

    def _distribution(self) -> Path:
        """The schema scripts of the binary distribution, extracted once next to the jars."""
        import tarfile

        from tv_platform.stack.maven import jars_dir

        jars = jars_dir(self.settings, "hive-metastore")
        home = jars / "dist"
        scripts = home / "scripts" / "metastore" / "upgrade" / "postgres"
        if not (scripts / "hive-schema-4.0.0.postgres.sql").exists():
            (archive,) = jars.glob("hive-standalone-metastore-server-*-bin.tar.gz")
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if "/scripts/metastore/upgrade/postgres/" in m.name and m.isfile()]
                for m in members:
                    m.name = m.name.split("/", 1)[1]
                tar.extractall(home, members=members, filter="data")
        return home

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java_bin(), f"-Xmx{self.settings.hive_metastore_heap}", "-Xms64m", "-XX:+UseSerialGC",
            "-XX:MaxMetaspaceSize=192m", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.net.preferIPv4Stack=true", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            "-cp", classpath(self.settings, "hive-metastore", [self.conf_dir]), main, *args,
        ]

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = self._java(MAIN)
        return argv, {"HADOOP_USER_NAME": self.settings.hdfs_user, "METASTORE_CONF_DIR": str(self.conf_dir)}

    def ready(self) -> bool:
        return port_open(self.port) and thrift_call("127.0.0.1", self.port, "get_all_databases") == 2
