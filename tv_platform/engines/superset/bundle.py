"""The dashboards-as-code bundle (``superset_exports/``) adapted to the settings and imported into a running Superset.

The import goes through ``/api/v1/assets/import/`` (which overwrites charts and datasets too; the dashboard importer
would keep stale charts), with the databases' URIs and dataset schemas taken from the settings and the passwords
supplied in the ``passwords`` form field — no file holds one.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tv_platform.engines.superset.client import SupersetClient
from tv_platform.engines.superset.conf import SupersetSettings
from tv_platform.settings import Settings, get_settings
from tv_platform.processes import StackError

REPO_ROOT = Path(__file__).resolve().parents[3]
BUNDLE_DIR = REPO_ROOT / "superset_exports"

MASK = "XXXXXXXXXX"
"""How Superset writes a password inside an exported URI; the real one comes from the ``passwords`` field."""


def load_bundle(root: Path = BUNDLE_DIR) -> dict[str, dict[str, Any]]:
    """Every YAML file of the bundle, keyed by its path relative to ``root`` (``databases/x.yaml``, ...)."""
    import yaml

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

    from tv_platform.engines.clickhouse import chdb_path, is_chdb

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
    the datasets' schemas (also in a virtual dataset's SQL) from ``TVP_GP_SCHEMA`` / ``TVP_CLICKHOUSE_DATABASE``;
    nothing else changes. The metadata type
    becomes ``assets`` (the importer that overwrites every object, see the module doc)."""
    import yaml

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
            schema = settings.gp_schema if kind == "greenplum" else settings.clickhouse_database
            if doc.get("sql"):  # a virtual dataset names its tables with the bundle's schema
                doc["sql"] = doc["sql"].replace(f"{doc['schema']}.", f"{schema}.")
            doc["schema"] = schema
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
    conf = conf or SupersetSettings.from_env(settings)
    payload, passwords = render_bundle(settings, root)
    client = SupersetClient(conf)
    client.import_assets(payload, passwords)
    return {"dashboards": [d["dashboard_title"] for d in client.dashboards()], "charts": len(client.charts())}

