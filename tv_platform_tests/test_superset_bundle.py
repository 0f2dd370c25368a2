"""The Superset bundle as files (no services): up to date with its generator, no password anywhere, every reference
resolvable, both dashboards mirror images, and the import adapting it to the settings."""

import io
import json
import os
import re
import sqlite3
import stat
import zipfile
from pathlib import Path

import pytest
import yaml

from superset_exports import build as B
from tv_platform.engines import superset as S
from tv_platform.settings import Settings
from tv_platform.stack import superset as superset_service

BUNDLE = Path(B.__file__).resolve().parent
ALLOWED_VIZ = {"table", "pie", "big_number_total", "echarts_timeseries_line", "echarts_timeseries_bar", "heatmap_v2"}  # all current in Superset 6.1 (none of the legacy types it removed)


@pytest.fixture(scope="module")
def files() -> dict[str, dict]:
    return S.load_bundle(BUNDLE)


def test_files_are_what_build_py_writes(capsys):
    assert B.main(["--check"]) == 0, capsys.readouterr().out


def test_metadata_is_a_dashboard_export(files):
    assert files["metadata.yaml"]["version"] == "1.0.0"
    assert files["metadata.yaml"]["type"] == "Dashboard"
    assert {rel.split("/")[0] for rel in files} == {"metadata.yaml", "databases", "datasets", "charts", "dashboards"}


def test_no_password_in_any_file():
    secrets = {"tv_reader", "tv_loader", "dagster", "admin"}  # the stack's local passwords
    for path in BUNDLE.rglob("*"):
        if path.suffix not in (".yaml", ".md", ".py"):
            continue
        text = path.read_text()
        for m in re.finditer(r"://([^:/@\s]+):([^@\s]*)@", text):
            assert m.group(2) == S.MASK, f"{path}: a password in {m.group(0)}"
        if path.suffix == ".yaml":
            def walk(node):
                if isinstance(node, dict):
                    for k, v in node.items():
                        assert "password" not in str(k).lower(), f"{path}: key {k}"
                        walk(v)
                elif isinstance(node, list):
                    for v in node:
                        walk(v)
            walk(yaml.safe_load(text))
            for word in secrets:
                assert f":{word}@" not in text


def test_uuids_are_unique(files):
    uuids = [doc["uuid"] for rel, doc in files.items() if rel != "metadata.yaml"]
    assert len(uuids) == len(set(uuids))


def _index(files):
    datasets = {doc["uuid"]: doc for rel, doc in files.items() if rel.startswith("datasets/")}
    databases = {doc["uuid"]: doc for rel, doc in files.items() if rel.startswith("databases/")}
    charts = {doc["uuid"]: doc for rel, doc in files.items() if rel.startswith("charts/")}
    return datasets, databases, charts


def _chart_columns(params: dict) -> list:
    cols = []
    for key in ("groupby", "all_columns"):
        v = params.get(key) or []
        cols += v if isinstance(v, list) else [v]
    for key in ("x_axis", "column"):
        if params.get(key):
            cols.append(params[key])
    cols += [f["subject"] for f in params.get("adhoc_filters", [])]
    return cols


def test_charts_use_current_viz_types_and_resolvable_names(files):
    datasets, _, charts = _index(files)
    for uid, chart in charts.items():
        p = chart["params"]
        assert chart["viz_type"] == p["viz_type"] in ALLOWED_VIZ, chart["slice_name"]
        ds = datasets[chart["dataset_uuid"]]
        columns = {c["column_name"] for c in ds["columns"]}
        metrics = {m["metric_name"] for m in ds["metrics"]}
        assert not columns & metrics, f"{ds['table_name']}: a metric named like a column (cyclic alias on ClickHouse)"
        for m in (p.get("metrics") or []) + ([p["metric"]] if p.get("metric") else []):
            assert m in metrics, (chart["slice_name"], m)
        for c in _chart_columns(p):
            if isinstance(c, dict):
                assert c["expressionType"] == "SQL" and c["label"] and c["sqlExpression"]
            else:
                assert c in columns, (chart["slice_name"], c)
        qc = json.loads(chart["query_context"])
        assert qc["datasource"] == {"id": int(p["datasource"].split("__")[0]), "type": "table"}
        time_column = ds["main_dttm_col"]
        defaults = B.top_n_filters() if ds["table_name"] in B.TOP_DATASETS else []  # the Top N filter's default
        filters = qc["queries"][0]["filters"]
        assert filters[:len(defaults)] == defaults  # first, as the dashboard sends them
        filters = filters[len(defaults):]
        assert filters[0] == {"col": time_column, "op": "TEMPORAL_RANGE", "val": "No filter"}
        assert filters[1:] == [{"col": f["subject"], "op": f["operator"], "val": f["comparator"]}
                               for f in p["adhoc_filters"][1:]]


def test_datasets_declare_the_marts_columns(files):
    from tv_platform.assets.marts import AUDIENCE_MARTS, FORECAST, MARTS
    from tv_platform.epg.marts import PROGRAMME_MARTS

    marts = {**MARTS, **PROGRAMME_MARTS, "forecast_daily": FORECAST, **AUDIENCE_MARTS}
    assert set(B.DATASET_TABLES) == set(marts)  # every mart has a dataset
    for rel, ds in files.items():
        if rel.startswith("datasets/"):
            physical = [c["column_name"] for c in ds["columns"] if not c["expression"]]
            top = ds["table_name"] in B.TOP_DATASETS  # a mart with the rank of its rows' series or programme
            assert physical == list(marts[B.base_table(ds["table_name"])].columns) + (["top_rank"] if top else []), rel
            assert ds["main_dttm_col"] == ("day" if ds["table_name"] == "forecast_daily" else "dt")
            assert {c["column_name"] for c in ds["columns"] if c["is_dttm"]} >= {ds["main_dttm_col"]}
            assert ds["schema"] == "tv_marts"
            assert (ds["sql"] is None) != top  # physical datasets over the marts, virtual ones for the top N


def test_dashboards_mirror_each_other_and_stay_on_their_warehouse(files):
    datasets, databases, charts = _index(files)
    dashboards = {rel: doc for rel, doc in files.items() if rel.startswith("dashboards/")}
    assert len(dashboards) == 2
    titles = []
    for rel, dash in dashboards.items():
        pos = dash["position"]
        on = [v["meta"] for v in pos.values() if isinstance(v, dict) and v.get("type") == "CHART"]
        assert {m["uuid"] for m in on} <= set(charts)
        dbs = {datasets[charts[m["uuid"]]["dataset_uuid"]]["database_uuid"] for m in on}
        assert len(dbs) == 1, f"{rel} mixes warehouses"
        titles.append(sorted(charts[m["uuid"]]["slice_name"] for m in on))
        for v in pos.values():
            if isinstance(v, dict) and v.get("type") == "ROW":
                assert sum(pos[c]["meta"]["width"] for c in v["children"]) <= 12
        assert len(on) == len(B.CHARTS)
    assert titles[0] == titles[1]


def test_native_filters_date_range_everywhere_channel_and_series_where_the_dataset_has_them(files):
    datasets, _, charts = _index(files)
    for rel, dash in files.items():
        if not rel.startswith("dashboards/"):
            continue
        filters = {f["name"]: f for f in dash["metadata"]["native_filter_configuration"]}
        assert set(filters) == {"Date range", "Channel", "Series", "Top N"}
        # Top N: a range on top_rank, default 1..20, over exactly the charts whose dataset has that column
        top = filters["Top N"]
        assert top["filterType"] == "filter_range" and top["targets"][0]["column"]["name"] == "top_rank"
        assert top["defaultDataMask"]["filterState"]["value"] == [1, B.TOP_N_DEFAULT] == [1, 20]
        for meta in (v["meta"] for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "CHART"):
            ds = datasets[charts[meta["uuid"]]["dataset_uuid"]]
            has_rank = "top_rank" in {c["column_name"] for c in ds["columns"]}
            assert (meta["chartId"] not in set(top["scope"]["excluded"])) == has_rank, meta["sliceName"]
        assert filters["Date range"]["filterType"] == "filter_time"
        assert filters["Date range"]["scope"] == {"rootPath": ["ROOT_ID"], "excluded": []}
        channel = filters["Channel"]
        assert channel["filterType"] == "filter_select"
        target = channel["targets"][0]
        assert target["column"]["name"] == "channel_name"
        assert "channel_name" in {c["column_name"] for c in datasets[target["datasetUuid"]]["columns"]}
        excluded = set(channel["scope"]["excluded"])
        for meta in (v["meta"] for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "CHART"):
            ds = datasets[charts[meta["uuid"]]["dataset_uuid"]]
            has_channel = "channel_name" in {c["column_name"] for c in ds["columns"]}
            assert (meta["chartId"] not in excluded) == has_channel, meta["sliceName"]
        # Series: the series charts (B.SERIES_TABLES, all with a series column)
        series = filters["Series"]
        target = series["targets"][0]
        assert series["filterType"] == "filter_select" and target["column"]["name"] == "series"
        assert datasets[target["datasetUuid"]]["table_name"] == "series_popularity"
        excluded = set(series["scope"]["excluded"])
        for meta in (v["meta"] for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "CHART"):
            ds = datasets[charts[meta["uuid"]]["dataset_uuid"]]
            in_scope = ds["table_name"] in B.SERIES_TABLES
            assert (meta["chartId"] not in excluded) == in_scope, meta["sliceName"]
            assert not in_scope or "series" in {c["column_name"] for c in ds["columns"]}


def _settings(monkeypatch, tmp_path, **env) -> Settings:
    monkeypatch.setenv("TVP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TVP_CACHE_DIR", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings.from_env()


def test_render_bundle_takes_endpoints_schemas_and_passwords_from_the_settings(monkeypatch, tmp_path):
    s = _settings(monkeypatch, tmp_path, TVP_GP_HOST="gp.example", TVP_GP_PORT="6543", TVP_GP_DATABASE="dwh",
                  TVP_GP_SCHEMA="marts2", TVP_GP_READER_USER="bi", TVP_GP_READER_PASSWORD="s3cret:@/",
                  TVP_CLICKHOUSE_URL="https://ana:p%40ss@ch.example:8443", TVP_CLICKHOUSE_DATABASE="dw")
    payload, passwords = S.render_bundle(s, BUNDLE)
    assert passwords == {"databases/tv_greenplum.yaml": "s3cret:@/", "databases/tv_clickhouse.yaml": "p@ss"}
    zf = zipfile.ZipFile(io.BytesIO(payload))
    docs = {n.split("/", 1)[1]: yaml.safe_load(zf.read(n)) for n in zf.namelist()}
    assert docs["metadata.yaml"]["type"] == "assets"
    uris = {name: doc["sqlalchemy_uri"] for name, doc in docs.items() if name.startswith("databases/")}
    assert uris == {"databases/tv_greenplum.yaml": "postgresql+psycopg2://bi:XXXXXXXXXX@gp.example:6543/dwh",
                    "databases/tv_clickhouse.yaml": "clickhousedb://ana:XXXXXXXXXX@ch.example:8443/dw?secure=true"}
    for name, doc in docs.items():
        if name.startswith("datasets/tv_greenplum/"):
            assert doc["schema"] == "marts2"
        elif name.startswith("datasets/tv_clickhouse/"):
            assert doc["schema"] == "dw"
        if name.startswith("datasets/"):
            assert "tv_marts" not in (doc["sql"] or "")  # a virtual dataset's tables follow the schema too
    blob = b"".join(zf.read(n) for n in zf.namelist())
    assert b"s3cret" not in blob and b"p@ss" not in blob and b"p%40ss" not in blob


def test_render_bundle_points_clickhouse_at_the_embedded_engine(monkeypatch, tmp_path):
    s = _settings(monkeypatch, tmp_path)
    payload, passwords = S.render_bundle(s, BUNDLE)
    docs = {n.split("/", 1)[1]: yaml.safe_load(zipfile.ZipFile(io.BytesIO(payload)).read(n))
            for n in zipfile.ZipFile(io.BytesIO(payload)).namelist()}
    uri = docs["databases/tv_clickhouse.yaml"]["sqlalchemy_uri"]
    assert uri == f"clickhousedb:///tv_marts?interface=chdb&path={tmp_path}/state/clickhouse"
    assert set(passwords) == {"databases/tv_greenplum.yaml"}  # chDB has no password


def test_superset_settings_from_the_environment(monkeypatch, tmp_path):
    s = _settings(monkeypatch, tmp_path)
    for k in S.SUPERSET_ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    conf = S.SupersetSettings.from_env(s)
    assert (conf.host, conf.port, conf.admin_user, conf.admin_password_env, conf.secret_key) == (
        "127.0.0.1", 8088, "admin", None, None)
    assert conf.data_dir == s.state_dir / "superset"
    monkeypatch.setenv("TVP_SUPERSET_PORT", "18088")
    monkeypatch.setenv("TVP_SUPERSET_ADMIN_USER", "boss")
    monkeypatch.setenv("TVP_SUPERSET_ADMIN_PASSWORD", "pw")
    monkeypatch.setenv("TVP_SUPERSET_SECRET_KEY", "k" * 40)
    conf = S.SupersetSettings.from_env(s)
    assert (conf.url, conf.admin_user, conf.admin_password, conf.secret_key) == (
        "http://127.0.0.1:18088", "boss", "pw", "k" * 40)
    monkeypatch.setenv("TVP_SUPERSET_PORT", "http")
    with pytest.raises(ValueError, match="TVP_SUPERSET_PORT"):
        S.SupersetSettings.from_env(s)


def test_no_default_admin_password_one_is_generated_once_with_mode_0600(monkeypatch, tmp_path):
    """Without TVP_SUPERSET_ADMIN_PASSWORD there is no password until `superset up` generates one: into the state
    directory (0700) as a file of mode 0600, once — a second start keeps it; the environment's password wins."""
    s = _settings(monkeypatch, tmp_path)
    for k in S.SUPERSET_ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    conf = S.SupersetSettings.from_env(s)
    with pytest.raises(S.StackError, match="superset up"):
        conf.admin_password
    generated = conf.ensure_admin_password()
    assert generated and len(generated) >= 20 and generated != "admin"
    assert conf.admin_password == generated
    assert (conf.password_file.stat().st_mode & 0o777) == 0o600
    assert (conf.data_dir.stat().st_mode & 0o777) == 0o700
    assert conf.ensure_admin_password() is None and conf.admin_password == generated  # kept, not shown again
    svc = superset_service.SupersetService(s, conf=conf)
    assert (svc.data_dir / "secret_key").exists() is False and svc.secret_key() == svc.secret_key()
    assert ((svc.data_dir / "secret_key").stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("TVP_SUPERSET_ADMIN_PASSWORD", "from-env")
    assert S.SupersetSettings.from_env(s).admin_password == "from-env"
    assert S.SupersetSettings.from_env(s).ensure_admin_password() is None


def test_service_layout_config_and_generated_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("TVP_SUPERSET_SECRET_KEY", raising=False)
    s = _settings(monkeypatch, tmp_path)
    svc = superset_service.SupersetService(s)
    assert svc.venv == tmp_path / "cache" / "superset-venv"
    assert svc.data_dir == tmp_path / "state" / "superset"
    assert svc.pid_file == tmp_path / "state" / "superset" / "superset.pid"
    assert svc.log_file == tmp_path / "state" / "logs" / "superset.log"
    svc.write_config()
    text = svc.config_file.read_text()
    compile(text, str(svc.config_file), "exec")
    assert f"sqlite:///{tmp_path}/state/superset/superset.db" in text
    key = svc.secret_key()
    assert len(key) >= 40 and svc.secret_key() == key  # generated once, then reused
    assert key not in text  # the config reads it from the environment
    assert stat.S_IMODE(os.stat(svc.data_dir / "secret_key").st_mode) == 0o600
    argv, env = svc.command()
    assert argv[0].endswith("superset-venv/bin/gunicorn") and "--workers" in argv
    assert argv[argv.index("--workers") + 1] == "1" and argv[argv.index("--bind") + 1] == "127.0.0.1:8088"
    assert env["SUPERSET_SECRET_KEY"] == key and env["SUPERSET_CONFIG_PATH"] == str(svc.config_file)
    assert not svc.installed()


def test_sqlite_fix_lets_two_databases_have_a_table_of_the_same_name(tmp_path):
    db = tmp_path / "superset.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE dbs (id INTEGER PRIMARY KEY);
        CREATE TABLE "tables" (
            id INTEGER NOT NULL, table_name VARCHAR(250) NOT NULL, database_id INTEGER NOT NULL, schema VARCHAR(255),
            catalog VARCHAR(256), uuid NUMERIC(16),
            PRIMARY KEY (id), CONSTRAINT uq_tables_uuid UNIQUE (uuid), FOREIGN KEY(database_id) REFERENCES dbs (id),
            UNIQUE (table_name)
        );
        CREATE TABLE table_columns (id INTEGER PRIMARY KEY, table_id INTEGER REFERENCES "tables" (id));
        INSERT INTO dbs VALUES (1), (2);
        INSERT INTO "tables" (id, table_name, database_id, schema, uuid) VALUES (1, 'channel_rating', 1, 'tv_marts', 1);
        INSERT INTO table_columns VALUES (1, 1);
    """)
    con.commit()
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO \"tables\" (id, table_name, database_id, schema, uuid) "
                    "VALUES (2, 'channel_rating', 2, 'tv_marts', 2)")
    con.close()
    assert superset_service.fix_sqlite_dataset_uniqueness(db) is True
    assert superset_service.fix_sqlite_dataset_uniqueness(db) is False  # idempotent
    con = sqlite3.connect(db)
    con.execute("INSERT INTO \"tables\" (id, table_name, database_id, schema, uuid) "
                "VALUES (2, 'channel_rating', 2, 'tv_marts', 2)")
    with pytest.raises(sqlite3.IntegrityError):  # still one dataset per (database, catalog, schema, table)
        con.execute("INSERT INTO \"tables\" (id, table_name, database_id, schema, uuid) "
                    "VALUES (3, 'channel_rating', 2, 'tv_marts', 3)")
    assert con.execute("SELECT table_name FROM \"tables\" t JOIN table_columns c ON c.table_id = t.id").fetchall() == [
        ("channel_rating",)]
    con.close()


def test_cli_has_the_superset_command():
    from tv_platform.cli import build_parser

    args = build_parser().parse_args(["superset", "up", "--no-import"])
    assert (args.command, args.superset_action, args.no_import) == ("superset", "up", True)
    for action in ("down", "status", "import", "screenshot"):
        assert build_parser().parse_args(["superset", action]).superset_action == action


def test_settings_command_masks_every_secret(monkeypatch, tmp_path, capsys):
    """`tv-platform settings` prints no password, secret or password inside a URL."""
    from tv_platform.cli import main
    from tv_platform.settings import get_settings

    _settings(monkeypatch, tmp_path, TVP_GP_LOADER_PASSWORD="l0ader-pw", TVP_GP_READER_PASSWORD="r3ader-pw",
              TVP_DAGSTER_PG_PASSWORD="dag-pw", TVP_CLICKHOUSE_URL="https://ana:url-pw@ch.example:8443")
    get_settings.cache_clear()
    try:
        assert main(["settings"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    for secret in ("l0ader-pw", "r3ader-pw", "dag-pw", "url-pw"):
        assert secret not in out
    assert "https://ana:********@ch.example:8443" in out and "gp_reader_password         ********" in out


def test_the_state_directory_is_created_owner_only(monkeypatch, tmp_path):
    from tv_platform.settings import make_state_dir

    s = _settings(monkeypatch, tmp_path)
    assert not s.state_dir.exists()
    make_state_dir(s)
    assert stat.S_IMODE(s.state_dir.stat().st_mode) == 0o700
