"""Superset for real: the bundle of superset_exports/ imported into Superset 6.1 (its own virtualenv, started by
``tv-platform superset up``'s code), every chart's data answered by both warehouses over real marts (the seed's stream
day 2023-09-23 built through the lake and the programme guide; the forecast computed by ``viewing_forecast`` over a
simulated 21-day history ending that day), and both dashboards rendered by headless Chromium (Playwright) with no chart in error —
screenshots in test-artifacts/. The marts and the Superset are the tests' own (``isolated``), never the platform's."""

import os
import time
import uuid
from datetime import date

import pandas as pd
import pytest

from tv_platform.engines import superset as S
from tv_platform.stack import superset as superset_service

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

SEED_DAY = "2023-09-23"
DASHBOARDS = {"greenplum": "tv-greenplum", "clickhouse": "tv-clickhouse"}


# ---------------------------------------------------------------------------------------------------------------------
# fixtures: real marts for the seed day, a running Superset with the bundle imported, a browser
# ---------------------------------------------------------------------------------------------------------------------
def _warehouse_values(settings, queries: dict[str, tuple[str, str]]) -> dict[str, float]:
    """``{name: (table, SQL)}`` -> ``{"greenplum.<name>": value, "clickhouse.<name>": value}``: one number per query
    in each warehouse, 0 where the table is missing. ``{t}`` in the SQL stands for the table."""
    import psycopg2

    from tv_platform.stack.clickhouse import clickhouse_client

    out: dict[str, float] = {}
    conn = psycopg2.connect(settings.gp_dsn("reader"))
    try:
        with conn.cursor() as cur:
            for name, (table, sql) in queries.items():
                cur.execute("SELECT to_regclass(%s)", (f"{settings.gp_schema}.{table}",))
                if cur.fetchone()[0] is None:
                    out[f"greenplum.{name}"] = 0
                    continue
                cur.execute(sql.format(t=f'"{settings.gp_schema}"."{table}"'))
                out[f"greenplum.{name}"] = float(cur.fetchone()[0] or 0)
    finally:
        conn.close()
    with clickhouse_client(settings) as client:
        existing = {r[0] for r in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
        for name, (table, sql) in queries.items():
            out[f"clickhouse.{name}"] = float(client.command(sql.format(t=f"`{table}`")) or 0) if table in existing else 0
    return out


def _mart_rows(settings, day: str) -> dict[str, int]:
    """Rows of ``day`` in every mart of both warehouses, the lake's and the programme guide's (0 where the table is
    missing)."""
    from tv_platform.assets.marts import MARTS
    from tv_platform.epg.marts import PROGRAMME_MARTS

    tables = [*MARTS, *PROGRAMME_MARTS]  # a mart's table is named as its asset (greenplum/<name>, clickhouse/<name>)
    return {k: int(v) for k, v in _warehouse_values(
        settings, {t: (t, f"SELECT count(*) FROM {{t}} WHERE dt = '{day}'") for t in tables}).items()}


def _programmes_match_sessions(settings, day: str) -> bool:
    """The programme marts of ``day`` come from the same sessions as the lake's marts: the minutes attributed to
    programmes equal the day's in-day viewing hours × 60 in both warehouses (another test may have loaded the day's
    programme marts from sessions of its own)."""
    v = _warehouse_values(settings, {
        "programme_minutes": ("programme_popularity", f"SELECT sum(minutes) FROM {{t}} WHERE dt = '{day}'"),
        "day_minutes": ("daily_viewing", f"SELECT sum(hours_in_day) * 60 FROM {{t}} WHERE dt = '{day}'"),
    })
    # ... and on the calendar day (TVP_BROADCAST_DAY_START=00:00): every session started on the day is in the day's
    # duration histogram (marts loaded on another broadcast day are reloaded)
    n = _warehouse_values(settings, {
        "histogram": ("duration_histogram", f"SELECT sum(sessions) FROM {{t}} WHERE dt = '{day}'"),
        "sessions": ("sessions", f"SELECT count(*) FROM {{t}} WHERE dt = '{day}'"),
    })
    return all(v[f"{wh}.day_minutes"] > 0 and abs(v[f"{wh}.programme_minutes"] - v[f"{wh}.day_minutes"])
               <= 1e-6 * v[f"{wh}.day_minutes"] and n[f"{wh}.histogram"] == n[f"{wh}.sessions"]
               for wh in ("greenplum", "clickhouse"))


def _forecast_rows(settings, day: str) -> dict[str, float]:
    """The forecast mart's actual total of ``day`` (rows), per warehouse."""
    return _warehouse_values(settings, {"forecast_daily": (
        "forecast_daily", f"SELECT count(*) FROM {{t}} WHERE series = 'total' AND kind = 'actual' AND day = '{day}'")})


def _warehouses(settings) -> dict:
    """The warehouses of ``settings`` as the platform builds them: the resources checks query and the marts' IO managers."""
    from tv_platform.resources import get_resources

    keys = ("greenplum", "clickhouse", "greenplum_io_manager", "clickhouse_io_manager")
    return {k: v for k, v in get_resources(settings).items() if k in keys}


def load_seed_day_into_marts(settings, spark, lake, day: str = SEED_DAY) -> None:
    """The seed's stream day (fixtures/tv_stream.csv) through the lake graph into the marts of ``settings`` (schema
    ``gp_schema``, ClickHouse ``clickhouse_database``) — the tables the dashboards read. The lake part runs in a Hive
    database and lake directory of its own, dropped afterwards; the marts keep the day (a partition replace: re-running
    never duplicates)."""
    import dagster as dg

    from tv_platform.assets import lake as L
    from tv_platform.assets import marts as M
    from tv_platform.assets import programmes as PR
    from tv_platform.engines.hdfs import HdfsCsvIOManager, frame_to_csv_bytes
    from tv_platform.engines.spark import HiveIOManager, HiveResource
    from tv_platform_tests.conftest import FIXTURES

    suffix = uuid.uuid4().hex[:8]
    root = f"/tv_platform_test_superset_{suffix}"
    hive = HiveResource(spark_remote=settings.spark_remote, database=f"tv_test_superset_{suffix}",
                        lake_url=settings.hdfs_url, lake_root=root, webhdfs_url=settings.webhdfs_url,
                        hdfs_user=settings.hdfs_user)
    resources = {
        "hive": hive,
        "hive_io_manager": HiveIOManager(spark_remote=settings.spark_remote, database=hive.database,
                                         database_location=hive.resolved_database_location()),
        **_warehouses(settings),
        "hdfs_io_manager": HdfsCsvIOManager(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url,
                                            user=settings.hdfs_user, lake_root=root),
    }
    events = pd.read_csv(FIXTURES / "tv_stream.csv", header=None,
                         names=["session_id", "user_id", "channel_id", "timer", "status"])
    events["timer"] = pd.to_datetime(events["timer"])
    from tv_platform.settings import get_settings

    # the seed's day is the calendar day: the marts of the tests hold it on TVP_BROADCAST_DAY_START=00:00
    calendar_day = pytest.MonkeyPatch()
    calendar_day.setenv("TVP_BROADCAST_DAY_START", "00:00")
    get_settings.cache_clear()
    try:
        for d, part in events.groupby(events["timer"].dt.date):
            out = part.assign(timer=part["timer"].dt.strftime("%Y-%m-%d %H:%M:%S"))
            lake.write_bytes(f"{root}/raw/tv_stream/dt={d}/p0-000000000000-000000020000.csv", frame_to_csv_bytes(out))
        names = pd.read_csv(__import__("tv_platform").__path__[0] + "/data/tv_channels.csv")
        channels = names.assign(time_rating=0.0, viewers_rating=0.0, rank=names["channel_id"])
        lake.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(channels))
        users = pd.DataFrame({"user_id": range(1, 10_001)})
        users["user_name"] = "Абонент " + users["user_id"].astype(str)
        lake.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(users))

        assert dg.materialize([L.hive_channels, L.hive_users], resources=resources).success
        from tv_platform.assets import analytics as AN

        lake_assets = [L.hive_tv_dataset, L.hive_tv_stream, L.sessionize_assets, *L.AGGREGATES, AN.audience_daily]
        assert dg.materialize(lake_assets, partition_key=day, resources=resources).success
        # the marts, and the programme guide of the day -> viewing by programme -> popularity -> its marts
        mart_assets = [*M.assets, *PR.mart_assets, *M.audience_assets]
        result = dg.materialize([*lake_assets, *PR.assets, *PR.checks, *mart_assets], partition_key=day,
                                resources=resources,
                                selection=dg.AssetSelection.groups("marts", "programmes"))
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == sum(len(a.check_keys) for a in mart_assets) + 4  # + the programme layer's own four
        assert all(e.passed for e in checks), [e.metadata for e in checks if not e.passed]
    finally:
        calendar_day.undo()
        get_settings.cache_clear()
        try:
            hive.catalog().drop_database()
        finally:
            lake.delete(root)


def load_forecast_into_marts(settings, spark, last: str = SEED_DAY) -> None:
    """The real forecast (``viewing_forecast``) over a simulated 21-day history ending on ``last`` (a Hive database of
    its own, dropped afterwards), then the forecast marts of ``settings``'s warehouses replaced by it, checked
    against the Hive table."""
    import dagster as dg

    from tv_platform.assets import marts as M
    from tv_platform_tests.forecast_history import build_forecast_history

    history = build_forecast_history(settings, spark, date.fromisoformat(last), prefix="superset_forecast")
    try:
        result = dg.materialize([*M.forecast_assets, *M.forecast_checks], resources={
            "hive": history.hive, **_warehouses(settings)})
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
    finally:
        history.cleanup()


TEST_SCHEMA = "tv_marts_superset_test"
TEST_SUPERSET_PORT = int(os.environ.get("TVP_TEST_SUPERSET_PORT", "8089"))
"""The tests' Superset port: set TVP_TEST_SUPERSET_PORT when another stack's tests use 8089 on this machine."""


@pytest.fixture(scope="session")
def isolated(stack):
    """The stack's services, with a warehouse schema and ClickHouse database (``tv_marts_superset_test``) and a
    Superset (metadata under ``<state>/tests/superset``, port TEST_SUPERSET_PORT) of the tests' own: they load the seed day and
    replace the forecast, which must never happen to the platform's own marts and dashboards."""
    from dataclasses import replace

    from tv_platform_tests.conftest import create_warehouse_schema

    create_warehouse_schema(stack, TEST_SCHEMA)
    return replace(stack, gp_schema=TEST_SCHEMA, clickhouse_database=TEST_SCHEMA, state_dir=stack.state_dir / "tests")


@pytest.fixture(scope="session")
def superset_marts(isolated, spark, lake):
    """The tests' own marts hold the seed day in both warehouses — the lake's and the programme guide's, built from
    the same sessions — and the forecast mart a forecast whose history ends on it (loaded when they do not)."""
    t0 = time.monotonic()
    rows = _mart_rows(isolated, SEED_DAY)
    if not all(rows.values()) or not _programmes_match_sessions(isolated, SEED_DAY):
        load_seed_day_into_marts(isolated, spark, lake)
        rows = _mart_rows(isolated, SEED_DAY)
    assert all(rows.values()), rows
    assert _programmes_match_sessions(isolated, SEED_DAY)
    if not all(_forecast_rows(isolated, SEED_DAY).values()):
        load_forecast_into_marts(isolated, spark)
    forecast = _forecast_rows(isolated, SEED_DAY)
    assert all(v == 1 for v in forecast.values()), forecast
    print(f"marts for {SEED_DAY} ready in {time.monotonic() - t0:.0f}s: {rows}, {forecast}")
    return rows


@pytest.fixture(scope="session")
def superset(isolated, superset_marts):
    """Superset up (installed on first use, started if needed) with the bundle imported; stopped at the end if this
    session started it."""
    from dataclasses import replace

    conf = replace(S.SupersetSettings.from_env(isolated), port=TEST_SUPERSET_PORT)
    svc = superset_service.SupersetService(isolated, conf=conf)
    t0 = time.monotonic()
    svc.install(print)
    t_install = time.monotonic() - t0
    started_here = not svc.running()
    svc.start()  # imports the bundle (after_ready), also when it was already running
    print(f"superset: install {t_install:.0f}s, up + import {time.monotonic() - t0 - t_install:.0f}s")
    yield S.SupersetClient(svc.conf)
    if started_here:
        svc.stop()


@pytest.fixture(scope="session")
def browser(superset):
    S.ensure_chromium(print)
    with S.Browser() as b:
        yield b


@pytest.fixture(scope="session")
def chart_keys(superset) -> dict[int, tuple[str, str]]:
    """Superset chart id -> (warehouse, key in superset_exports/build.py's CHARTS), through the stable uuids."""
    from superset_exports.build import CHARTS, WAREHOUSES, uid

    by_uuid = {uid("chart", wh, c[0]): (wh, c[0]) for wh in WAREHOUSES for c in CHARTS}
    return {c["id"]: by_uuid[c["uuid"]] for c in superset.charts() if c["uuid"] in by_uuid}


def _charts_by_dashboard(client) -> dict[str, list[dict]]:
    return {wh: client.dashboard_charts(slug) for wh, slug in DASHBOARDS.items()}


# ---------------------------------------------------------------------------------------------------------------------
# the bundle in Superset
# ---------------------------------------------------------------------------------------------------------------------
def test_bundle_imports_both_dashboards_databases_and_datasets(superset, isolated):
    from superset_exports.build import CHARTS, DATASET_TABLES, WAREHOUSES

    dashboards = {d["slug"]: d for d in superset.dashboards()}
    assert set(DASHBOARDS.values()) <= set(dashboards)
    for wh, charts in _charts_by_dashboard(superset).items():
        assert sorted(c["slice_name"] for c in charts) == sorted(c[1] for c in CHARTS), wh
    databases = {d["database_name"]: d for d in superset.get("/api/v1/database/", q="(page_size:100)")["result"]}
    for wh, w in WAREHOUSES.items():
        assert w["database_name"] in databases
        uri = superset.get(f"/api/v1/database/{databases[w['database_name']]['id']}/connection")["result"][
            "sqlalchemy_uri"]
        if wh == "greenplum":  # the URI from the settings, the password (sent at import) masked
            assert uri == (f"postgresql+psycopg2://{isolated.gp_reader_user}:XXXXXXXXXX@{isolated.gp_host}:{isolated.gp_port}/"
                           f"{isolated.gp_database}")
        else:
            assert uri.startswith("clickhousedb://")
    datasets = superset.get("/api/v1/dataset/",
                            q="(page_size:100,columns:!(table_name,schema,database.database_name))")["result"]
    have = {(d["database"]["database_name"], d["schema"], d["table_name"]) for d in datasets}
    for wh, w in WAREHOUSES.items():
        schema = isolated.gp_schema if wh == "greenplum" else isolated.clickhouse_database
        for table in DATASET_TABLES:
            assert (w["database_name"], schema, table) in have


def test_import_is_idempotent(superset, isolated):
    before = {c["uuid"]: c["id"] for c in superset.charts()}
    S.import_bundle(isolated, superset.conf)
    after = {c["uuid"]: c["id"] for c in superset.charts()}
    assert before == after  # overwritten in place: the same objects, nothing duplicated
    assert sorted(d["slug"] for d in superset.dashboards() if d["slug"] in DASHBOARDS.values()) == sorted(
        DASHBOARDS.values())


def test_sql_lab_reads_both_warehouses(superset, isolated):
    """SQL Lab through each registered database (Greenplum as the read-only role — the URI above — ClickHouse
    through the embedded engine); DML is refused by the database settings (allow_dml false)."""
    from superset_exports.build import WAREHOUSES

    ids = {d["database_name"]: d["id"] for d in superset.get("/api/v1/database/", q="(page_size:100)")["result"]}
    for wh, w in WAREHOUSES.items():
        schema = isolated.gp_schema if wh == "greenplum" else isolated.clickhouse_database
        res = superset.post("/api/v1/sqllab/execute/", {
            "database_id": ids[w["database_name"]], "sql": f"SELECT count(*) AS n FROM {schema}.channel_rating",
            "runAsync": False, "schema": schema, "tab": "test"})
        assert res["status"] == "success", res
        assert res["data"][0]["n"] > 0, wh
        with pytest.raises(S.StackError, match="(?i)dml|not allowed|read"):
            superset.post("/api/v1/sqllab/execute/", {
                "database_id": ids[w["database_name"]], "sql": f"DELETE FROM {schema}.channel_rating WHERE 1 = 0",
                "runAsync": False, "schema": schema, "tab": "test"})


# ---------------------------------------------------------------------------------------------------------------------
# every chart's data, through its saved query context
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_every_chart_returns_rows(superset, warehouse):
    failures = {}
    for chart in _charts_by_dashboard(superset)[warehouse]:
        res = superset.chart_data(chart["id"])  # GET /api/v1/chart/<id>/data: the query context saved in the bundle
        rows = [r.get("rowcount", 0) for r in res["result"]]
        errors = [r["error"] for r in res["result"] if r.get("error")]
        if errors or not any(rows):
            failures[chart["slice_name"]] = errors or "no rows"
    assert not failures, failures


# ---------------------------------------------------------------------------------------------------------------------
# the dashboards in a browser
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def rendered(superset, browser, artifacts_dir) -> dict[str, S.DashboardRender]:
    out = {}
    for wh, slug in DASHBOARDS.items():
        out[wh] = S.render_dashboard(slug, artifacts_dir / f"superset-{slug}.png", browser=browser, conf=superset.conf)
        print(f"{slug}: {len(out[wh].charts)} charts rendered in {out[wh].seconds:.1f}s -> {out[wh].screenshot}")
    return out


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_dashboard_renders_every_chart_without_error(rendered, superset, warehouse):
    res = rendered[warehouse]
    assert not res.problems, res.problems
    charts = {c["id"] for c in superset.dashboard_charts(DASHBOARDS[warehouse])}
    assert {c["chart_id"] for c in res.charts} == charts
    assert all(c["drawn"] and not c["error"] for c in res.charts)
    # every chart asked for its data and got rows (200, no error), as the browser saw it
    answered = {d.get("slice_id") for d in res.data if d["status"] == 200 and any(d["rows"]) and not d["errors"]}
    assert charts <= answered
    assert res.screenshot is not None and res.screenshot.stat().st_size > 50_000


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_saved_query_contexts_are_what_the_dashboard_sends(rendered, superset, warehouse):
    """The query context saved with each chart (written by superset_exports/build.py) equals the one Superset's
    frontend builds for the dashboard — so GET /chart/<id>/data answers exactly what the dashboard shows."""
    import json

    res = rendered[warehouse]
    for chart in superset.dashboard_charts(DASHBOARDS[warehouse]):
        saved = json.loads(superset.get(f"/api/v1/chart/{chart['id']}")["result"]["query_context"])
        sent = res.query_contexts[chart["id"]]
        assert saved["datasource"] == sent["datasource"], chart["slice_name"]
        assert saved["queries"] == sent["queries"], chart["slice_name"]


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_date_range_filter_acts_on_every_chart(superset, browser, chart_keys, artifacts_dir, warehouse):
    empty = "2000-01-01 : 2000-01-02"  # no data: every chart but the big numbers comes back empty
    res = S.render_dashboard(DASHBOARDS[warehouse], None, browser=browser, conf=superset.conf,
                             data_mask=S.filter_state({"NATIVE_FILTER-date_range": empty}))
    charts = {c["id"] for c in superset.dashboard_charts(DASHBOARDS[warehouse])}
    assert set(res.query_contexts) == charts
    for cid, qc in res.query_contexts.items():
        assert qc["queries"][0]["time_range"] == empty, chart_keys[cid]
    for d in res.data:
        if d.get("slice_id") in charts and d["viz_type"] != "big_number_total":
            assert d["status"] == 200 and not d["errors"] and not any(d["rows"]), d
    errors = [c for c in res.charts if c["error"]]
    assert not errors, errors

    seed = f"{SEED_DAY} : 2023-09-24"
    res = S.render_dashboard(DASHBOARDS[warehouse], artifacts_dir / f"superset-{DASHBOARDS[warehouse]}-{SEED_DAY}.png",
                             browser=browser, conf=superset.conf,
                             data_mask=S.filter_state({"NATIVE_FILTER-date_range": seed}))
    assert not res.problems, res.problems
    assert all(qc["queries"][0]["time_range"] == seed for qc in res.query_contexts.values())


def _top_channel_with_a_top_programme(settings) -> str:
    """The most watched channel of the seed day among those with a programme in the day's top 10 (so every chart in
    the Channel filter's scope — "Top shows by start hour" and "Top 10 programmes of the day" too — has rows)."""
    import psycopg2

    s = settings.gp_schema
    with psycopg2.connect(settings.gp_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT c.channel_name FROM {s}.channel_rating c JOIN {s}.top_programmes p "
                    f"ON p.dt = c.dt AND p.channel_name = c.channel_name WHERE c.dt = %s AND p.chart = 'programme' "
                    f"GROUP BY c.channel_name ORDER BY max(c.hours) DESC LIMIT 1", (SEED_DAY,))
        return cur.fetchone()[0]


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_channel_filter_acts_on_the_channel_charts(superset, browser, chart_keys, artifacts_dir, warehouse, isolated):
    from superset_exports.build import CHARTS

    applies = {c[0]: c[4] for c in CHARTS}
    channel = _top_channel_with_a_top_programme(isolated)
    res = S.render_dashboard(DASHBOARDS[warehouse], artifacts_dir / f"superset-{DASHBOARDS[warehouse]}-channel.png",
                             browser=browser, conf=superset.conf,
                             data_mask=S.filter_state({"NATIVE_FILTER-channel": [channel]}))
    assert not res.problems, res.problems
    rows = {d["slice_id"]: d["rows"][0] for d in res.data if d.get("slice_id")}
    in_scope = set()
    for cid, qc in res.query_contexts.items():
        key = chart_keys[cid][1]
        has = {"col": "channel_name", "op": "IN", "val": [channel]} in qc["queries"][0]["filters"]
        assert has == applies[key], key
        if has:
            in_scope.add(key)
    assert in_scope == {k for k, v in applies.items() if v}
    by_key = {chart_keys[cid][1]: n for cid, n in rows.items()}
    assert by_key["channel_rating"] == by_key["top20"] == by_key["outsiders20"] == by_key["top10_pie"] == 1
    assert by_key["hourly_activity"] == 24  # out of scope: unchanged
    assert by_key["top_shows_heatmap"] >= 1 and by_key["top_programmes_table"] >= 1  # the channel's top programmes


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_series_filter_acts_on_the_programme_guide_charts(superset, browser, chart_keys, artifacts_dir, warehouse,
                                                          isolated):
    """The Series filter reaches exactly the charts over series_weekday_hour and series_popularity (not the top
    programmes, nor the forecast, whose 'series' column is another thing); picking a series leaves one row in the
    series table and one series in the series × hour heatmap."""
    from superset_exports.build import CHARTS, SERIES_TABLES

    series = _warehouse_series(isolated)
    res = S.render_dashboard(DASHBOARDS[warehouse], artifacts_dir / f"superset-{DASHBOARDS[warehouse]}-series.png",
                             browser=browser, conf=superset.conf,
                             data_mask=S.filter_state({"NATIVE_FILTER-series": [series]}))
    assert not res.problems, res.problems
    tables = {c[0]: c[2] for c in CHARTS}
    for cid, qc in res.query_contexts.items():
        key = chart_keys[cid][1]
        has = {"col": "series", "op": "IN", "val": [series]} in qc["queries"][0]["filters"]
        assert has == (tables[key] in SERIES_TABLES), key
    rows = {chart_keys[d["slice_id"]][1]: d["rows"][0] for d in res.data if d.get("slice_id")}
    assert rows["series_table"] == 1
    assert 1 <= rows["series_hour_heatmap"] <= 24  # one series: at most a cell per hour
    assert rows["forecast_line"] > 1 and rows["top_shows_heatmap"] > 1  # out of scope: unchanged


def _warehouse_series(settings) -> str:
    """The seed day's most watched series (recurring strand)."""
    import psycopg2

    with psycopg2.connect(settings.gp_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT series FROM {settings.gp_schema}.series_popularity WHERE dt = %s "
                    f"ORDER BY minutes DESC LIMIT 1", (SEED_DAY,))
        return cur.fetchone()[0]


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_programme_and_forecast_charts_show_the_marts_values(superset, chart_keys, isolated, warehouse):
    """The new charts' data (their saved query contexts, through Superset) against SQL on the warehouse itself."""
    by_key = {chart_keys[c["id"]][1]: c["id"] for c in superset.dashboard_charts(DASHBOARDS[warehouse])}

    def data(key):
        return pd.DataFrame(superset.chart_data(by_key[key])["result"][0]["data"])

    want = _warehouse_values(isolated, {
        # the top 20 series and programmes (a title on a channel) by minutes: the heatmaps' default Top N
        "series_hours": ("series_weekday_hour", "SELECT sum(m) / 60 FROM (SELECT series, sum(minutes) AS m FROM {t} "
                                                "GROUP BY series ORDER BY m DESC, series LIMIT 20) AS x"),
        "top_hours": ("programme_popularity", "SELECT sum(m) / 60 FROM (SELECT title, coalesce(channel_name, '') AS c, "
                                              "sum(minutes) AS m FROM {t} GROUP BY title, c ORDER BY m DESC, title, c "
                                              "LIMIT 20) AS x"),
        "programmes": ("programme_popularity", "SELECT count(*) FROM (SELECT DISTINCT title, channel_name FROM {t}) "
                                               "AS x"),
        "series": ("series_weekday_hour", "SELECT count(DISTINCT series) FROM {t}"),
        "all_series_hours": ("series_popularity", "SELECT sum(minutes) / 60 FROM {t}"),
        "actual_hours": ("forecast_daily", "SELECT sum(hours) FROM {t} WHERE series = 'total' AND kind = 'actual'"),
        "ridge_hours": ("forecast_daily",
                        "SELECT sum(hours) FROM {t} WHERE series = 'total' AND model = 'calendar_ridge'"),
        "forecast_days": ("forecast_daily", "SELECT count(DISTINCT day) FROM {t} WHERE series = 'total'"),
    })
    want = {k.split(".", 1)[1]: v for k, v in want.items() if k.startswith(warehouse + ".")}

    heat = data("series_hour_heatmap")
    assert heat["total_hours"].sum() == pytest.approx(want["series_hours"], rel=1e-9)
    assert heat["series"].nunique() == min(20, want["series"])  # readable: 20 labels, not hundreds
    top = data("top_shows_heatmap")
    assert top["total_hours"].sum() == pytest.approx(want["top_hours"], rel=1e-9)
    assert top["programme_label"].nunique() == min(20, want["programmes"])
    assert set(top["start_hour"]) <= set(range(24))
    # the rest are in the tables: every programme, every series
    assert len(data("programmes_table")) == min(1000, want["programmes"])
    assert data("series_table")["total_hours"].sum() == pytest.approx(want["all_series_hours"], rel=1e-9)
    line = data("forecast_line")  # one column per model after the pivot
    assert {"actual", "seasonal_naive", "calendar_ridge"} <= set(line.columns)
    assert len(line) == want["forecast_days"]  # a point per day: the history and the forecast days
    assert line["actual"].sum() == pytest.approx(want["actual_hours"], rel=1e-9)
    assert line["calendar_ridge"].sum() == pytest.approx(want["ridge_hours"], rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# the embedded ClickHouse: one process at a time
# ---------------------------------------------------------------------------------------------------------------------
def test_superset_releases_the_embedded_clickhouse_and_waits_for_a_load(superset, isolated):
    import threading

    from tv_platform.stack.clickhouse import chdb_locked_by_other, chdb_path, clickhouse_client, is_chdb

    if not is_chdb(isolated.clickhouse_url):
        pytest.skip("ClickHouse is a server here")
    chart = next(c for c in superset.dashboard_charts(DASHBOARDS["clickhouse"]) if c["slice_name"] == "Channel rating")
    assert superset.chart_data(chart["id"])["result"][0]["rowcount"] > 0
    assert not chdb_locked_by_other(chdb_path(isolated.clickhouse_url))  # Superset let go after its query
    with clickhouse_client(isolated, timeout=10) as client:  # a "load" takes the engine (within 10 s, or this fails)
        client.command("SELECT 1")
        result: dict = {}

        def query():
            t0 = time.monotonic()
            result["rows"] = superset.chart_data(chart["id"])["result"][0]["rowcount"]
            result["seconds"] = time.monotonic() - t0

        thread = threading.Thread(target=query)
        thread.start()
        time.sleep(2.0)  # meanwhile Superset's query waits for the engine
        assert thread.is_alive()
    thread.join(timeout=60)
    assert result["rows"] > 0 and result["seconds"] >= 1.5, result


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_session_length_charts_count_every_session_of_the_range(superset, chart_keys, isolated, warehouse):
    """The session-length charts read the duration_histogram mart (bins per day), not sampled raw rows: their totals
    are the sessions mart's count and hours of sessions started in the range."""
    by_key = {chart_keys[c["id"]][1]: c["id"] for c in superset.dashboard_charts(DASHBOARDS[warehouse])}
    want = _warehouse_values(isolated, {"sessions": ("sessions", "SELECT count(*) FROM {t}"),
                                        "hours": ("sessions", "SELECT sum(duration_s) / 3600.0 FROM {t}")})
    want = {k.split(".", 1)[1]: v for k, v in want.items() if k.startswith(warehouse + ".")}
    buckets = pd.DataFrame(superset.chart_data(by_key["duration_buckets"])["result"][0]["data"])
    hours = pd.DataFrame(superset.chart_data(by_key["duration_hours"])["result"][0]["data"])
    assert want["sessions"] > 0
    assert buckets["total_sessions"].sum() == want["sessions"]
    assert hours["total_hours"].sum() == pytest.approx(want["hours"], rel=1e-9)


WEEKDAY_DAYS = {"2001-01-02": (2, "Tuesday"), "2001-01-09": (2, "Tuesday"), "2001-01-06": (6, "Saturday")}


@pytest.fixture
def two_tuesdays_and_a_saturday(isolated):
    """Rows of channel_weekday_hour for two Tuesdays and one Saturday of 2001 (far from any other test's days) in the
    tests' marts of both warehouses, hour 20: Tuesday 2001-01-02 60 + 60 minutes on two channels, Tuesday 2001-01-09
    60 minutes, Saturday 2001-01-06 90 minutes. Removed afterwards."""
    import psycopg2

    from tv_platform.stack.clickhouse import clickhouse_client

    rows = [("2001-01-02", 1, "Первый канал", 60.0), ("2001-01-02", 2, "Россия 1", 60.0),
            ("2001-01-09", 1, "Первый канал", 60.0), ("2001-01-06", 1, "Первый канал", 90.0)]
    full = [(d, *WEEKDAY_DAYS[d], 20, cid, name, minutes, 1, 1) for d, cid, name, minutes in rows]
    cols = "dt, weekday, weekday_name, hour, channel_id, channel_name, minutes, sessions_active, viewers"
    table = f'"{isolated.gp_schema}".channel_weekday_hour'
    delete = f"DELETE FROM {table} WHERE dt < '2002-01-01'"
    with psycopg2.connect(isolated.gp_dsn("loader")) as conn, conn.cursor() as cur:
        cur.execute(delete)
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * 9)})", full)
    with clickhouse_client(isolated) as client:
        client.command("DELETE FROM channel_weekday_hour WHERE dt < '2002-01-01'")
        client.insert("channel_weekday_hour", [[__import__("datetime").date.fromisoformat(r[0]), *r[1:]] for r in full],
                      column_names=cols.split(", "))
    try:
        yield
    finally:
        with psycopg2.connect(isolated.gp_dsn("loader")) as conn, conn.cursor() as cur:
            cur.execute(delete)
        with clickhouse_client(isolated) as client:
            client.command("DELETE FROM channel_weekday_hour WHERE dt < '2002-01-01'")


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_weekday_hour_heatmap_shows_the_average_day(superset, chart_keys, warehouse, two_tuesdays_and_a_saturday):
    """Two Tuesdays and one Saturday in the range: the heatmap's Tuesday cell is Tuesday's hours over 2 days (3 h /
    2 = 1.5 h), Saturday's over 1 (1.5 h) — a sum would have shown Tuesday twice as dark as Saturday."""
    import json

    chart = next(c["id"] for c in superset.dashboard_charts(DASHBOARDS[warehouse])
                 if chart_keys[c["id"]][1] == "channel_heatmap")
    qc = json.loads(superset.get(f"/api/v1/chart/{chart}")["result"]["query_context"])
    for f in qc["queries"][0]["filters"]:
        if f["op"] == "TEMPORAL_RANGE":
            f["val"] = "2001-01-01 : 2001-01-10"
    res = superset.post("/api/v1/chart/data", qc)["result"][0]
    cells = {(r["weekday_label"], r["hour"]): r["hours_per_day"] for r in res["data"]}
    assert cells == {("2 Tuesday", 20): pytest.approx(1.5), ("6 Saturday", 20): pytest.approx(1.5)}
