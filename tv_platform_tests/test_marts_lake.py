"""End to end on the seed's stream day (tv_stream.csv, 10 000 views on 2023-09-23): raw CSV in HDFS -> the lake graph
(Hive, Spark) -> every mart in PostgreSQL and chDB -> the marts' checks; warehouse values against pandas computed from
the raw events, and the dashboards' queries answered by both warehouses alike."""

import uuid

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from tv_platform.assets import marts as M
from tv_platform.engines.clickhouse import ClickHouseWarehouse
from tv_platform.engines.greenplum import GreenplumWarehouse
from tv_platform.engines.warehouse import TableSpec
from tv_platform.resources import warehouse_resources
from tv_platform.engines.hdfs import frame_to_csv_bytes

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

D = "2023-09-23"


@pytest.fixture(scope="module")
def env(stack, spark, lake, tmp_path_factory):
    from tv_platform.engines.spark import HiveIOManager, HiveResource
    from tv_platform.stack.postgres import PostgresService

    suffix = uuid.uuid4().hex[:8]
    root = f"/tv_platform_test_marts_{suffix}"
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_test_marts_{suffix}", lake_url=stack.hdfs_url,
                        lake_root=root, webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    admin = PostgresService(stack).admin_connect(stack.gp_database)
    admin.autocommit = True
    schema = f"test_marts_{suffix}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{stack.gp_loader_user}"')
    resources = {
        "hive": hive,
        "hive_io_manager": HiveIOManager(spark_remote=stack.spark_remote, database=hive.database,
                                         database_location=hive.resolved_database_location()),
        **warehouse_resources(
            GreenplumWarehouse(
                host=stack.gp_host, port=stack.gp_port, database=stack.gp_database, schema_name=schema,
                user=stack.gp_loader_user, password=stack.gp_loader_password, reader_role=stack.gp_reader_user),
            ClickHouseWarehouse(url=f"chdb://{tmp_path_factory.mktemp('chdb_e2e') / 'engine'}",
                                database=f"test_marts_{suffix}")),
    }
    # the seed's stream day landed as the Kafka sensor lands it, with reference data
    from tv_platform_tests.conftest import FIXTURES

    events = pd.read_csv(FIXTURES / "tv_stream.csv", header=None,
                         names=["session_id", "user_id", "channel_id", "timer", "status"])
    events["timer"] = pd.to_datetime(events["timer"])
    for day, part in events.groupby(events["timer"].dt.date):
        out = part.assign(timer=part["timer"].dt.strftime("%Y-%m-%d %H:%M:%S"))
        lake.write_bytes(f"{root}/raw/tv_stream/dt={day}/p0-000000000000-000000020000.csv", frame_to_csv_bytes(out))
    names = pd.read_csv(__import__("tv_platform").__path__[0] + "/data/tv_channels.csv")
    channels = names.assign(time_rating=0.0, viewers_rating=0.0, rank=names["channel_id"])
    lake.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(channels))
    users = pd.DataFrame({"user_id": range(1, 10_001)})
    users["user_name"] = "Абонент " + users["user_id"].astype(str) + ", ТВ"
    lake.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(users))
    yield {"resources": resources, "events": events, "schema": schema, "channels": channels}
    with admin.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.close()
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(root)


@pytest.fixture(scope="module")
def run(env):
    from tv_platform.assets import lake as L

    resources = env["resources"]
    assert dg.materialize([L.hive_channels, L.hive_users], resources=resources).success
    from tv_platform.assets import analytics as AN

    lake_assets = [L.hive_tv_dataset, L.hive_tv_stream, L.sessionize_assets, *L.AGGREGATES, AN.audience_daily]
    assert dg.materialize(lake_assets, partition_key=D, resources=resources).success
    return dg.materialize([*lake_assets, *M.assets, *M.audience_assets],
                          partition_key=D, resources=resources,
                          selection=dg.AssetSelection.groups("marts"))


def _pandas_sessions(events: pd.DataFrame) -> pd.DataFrame:
    e = events[events.status == "enabled"].set_index("session_id")
    x = events[events.status == "disabled"].set_index("session_id")
    s = e[["user_id", "channel_id", "timer"]].rename(columns={"timer": "start"}).join(
        x[["timer"]].rename(columns={"timer": "end"}))
    s["seconds"] = (s["end"] - s["start"]).dt.total_seconds()
    return s[s["start"].dt.strftime("%Y-%m-%d") == D]


def test_lake_to_marts_checks_pass(run):
    assert run.success
    evaluations = run.get_asset_check_evaluations()
    assert len(evaluations) == 2 * (len(M.MARTS) + len(M.AUDIENCE_MARTS))
    failed = [(e.asset_key.to_user_string(), e.metadata) for e in evaluations if not e.passed]
    assert not failed


def test_sessions_mart_equals_pandas_from_raw_events(env, run):
    s = _pandas_sessions(env["events"])
    for warehouse in M.WAREHOUSES:
        mart = M.MARTS["sessions"]
        io = env["resources"][warehouse]
        got = io.read_frame(TableSpec.from_metadata("sessions", mart.metadata(warehouse)), [D]).set_index("session_id")
        assert len(got) == len(s) == 10_000
        got = got.loc[s.index]
        assert (got["duration_s"].astype("int64").to_numpy() == s["seconds"].astype("int64").to_numpy()).all()
        assert (got["time_start"].astype("datetime64[s]").to_numpy() == s["start"].astype("datetime64[s]").to_numpy()).all()
        assert (got["user_id"].astype("int64").to_numpy() == s["user_id"].to_numpy()).all()
        names = env["channels"].set_index("channel_id")["channel_name"]
        assert (got["channel_name"].to_numpy() == names.loc[s["channel_id"]].to_numpy()).all()
        assert round(got["duration_s"].astype("int64").sum() / 3600) == 19_882


DASHBOARD_QUERIES = {
    # (greenplum, clickhouse) — the same question in each dialect
    "top_channels": (
        "SELECT channel_name, sum(hours) AS h FROM {gp}.channel_rating WHERE dt BETWEEN '2023-09-01' AND '2023-09-30' "
        "GROUP BY channel_name ORDER BY h DESC, channel_name LIMIT 10",
        "SELECT channel_name, sum(hours) AS h FROM {ch}.channel_rating WHERE dt BETWEEN '2023-09-01' AND '2023-09-30' "
        "GROUP BY channel_name ORDER BY h DESC, channel_name LIMIT 10",
    ),
    "hourly": (
        "SELECT hour, sum(minutes) FROM {gp}.hourly_activity WHERE dt = '2023-09-23' GROUP BY hour ORDER BY hour",
        "SELECT hour, sum(minutes) FROM {ch}.hourly_activity WHERE dt = '2023-09-23' GROUP BY hour ORDER BY hour",
    ),
    "sessions_by_hour": (
        "SELECT extract(hour FROM time_start)::int AS h, count(*) FROM {gp}.sessions WHERE dt = '2023-09-23' "
        "GROUP BY 1 ORDER BY 1",
        "SELECT toHour(time_start) AS h, count() FROM {ch}.sessions WHERE dt = '2023-09-23' GROUP BY h ORDER BY h",
    ),
}


@pytest.mark.parametrize("query", list(DASHBOARD_QUERIES))
def test_both_warehouses_answer_dashboard_queries_alike(env, run, stack, query):
    gp_sql, ch_sql = DASHBOARD_QUERIES[query]
    conn = psycopg2.connect(stack.gp_dsn("reader"))  # dashboards read as the read-only role
    try:
        with conn.cursor() as cur:
            cur.execute(gp_sql.format(gp=f'"{env["schema"]}"'))
            gp_rows = cur.fetchall()
    finally:
        conn.close()
    ch = env["resources"]["clickhouse"]
    with ch.session() as session:
        ch_rows = session.client.query(ch_sql.format(ch=ch.database)).result_rows
    assert len(gp_rows) == len(ch_rows) > 0
    for a, b in zip(gp_rows, ch_rows):
        assert a[0] == b[0] and float(a[1]) == pytest.approx(float(b[1]), rel=1e-9)


def _pandas_credited_minutes(events: pd.DataFrame, day: str, start_hour: int = 5) -> pd.DataFrame:
    """docs/measures.md's minute crediting done again with numpy over every session of the raw events: (user, minute
    of the broadcast day, channel) of the credited minutes — the channel watched longest in the minute, ≥ 30 s."""
    e = events[events.status == "enabled"].set_index("session_id")
    x = events[events.status == "disabled"].set_index("session_id")
    s = e[["user_id", "channel_id", "timer"]].rename(columns={"timer": "start"}).join(
        x[["timer"]].rename(columns={"timer": "end"}), how="inner")
    w0 = pd.Timestamp(day) + pd.Timedelta(hours=start_hour)
    a = ((s["start"] - w0).dt.total_seconds().clip(0, 86_400)).to_numpy()
    b = ((s["end"] - w0).dt.total_seconds().clip(0, 86_400)).to_numpy()
    keep = b > a
    a, b = a[keep], b[keep]
    users, channels = s["user_id"].to_numpy()[keep], s["channel_id"].to_numpy()[keep]
    first, last = (a // 60).astype(int), (-(-b // 60)).astype(int)
    n = last - first
    rep = pd.DataFrame({"user": users.repeat(n), "channel": channels.repeat(n),
                        "minute": [m for f, k in zip(first, n) for m in range(f, f + k)],
                        "a": a.repeat(n), "b": b.repeat(n)})
    lo = rep["minute"] * 60
    rep["s"] = (rep["b"].clip(upper=lo + 60) - rep["a"].clip(lower=lo)).clip(lower=0)
    per = rep.groupby(["user", "minute", "channel"], as_index=False)["s"].sum()
    per["s"] = per["s"].clip(upper=60)
    per = per.sort_values(["user", "minute", "s", "channel"], ascending=[True, True, False, True])
    best = per.drop_duplicates(["user", "minute"])
    return best[best["s"] >= 30]


def test_audience_marts_equal_pandas_from_raw_events(env, run):
    """TVR, AMA, reach, share and ATS of the whole broadcast day per channel, read from both warehouses, against the
    definitions applied with pandas to the raw events (universe: the 10 000 reference subscribers)."""
    # this module runs on the calendar day (TVP_BROADCAST_DAY_START=00:00, calendar_day above); the 05:00 day is
    # checked by hand in test_measures.py and test_broadcast_day.py
    credited = _pandas_credited_minutes(env["events"], D, start_hour=0)
    universe = 10_000
    per = credited.groupby("channel").agg(minutes=("minute", "size"), reach=("user", "nunique"))
    total = int(per["minutes"].sum())
    assert total > 1_000_000  # ~19 900 hours watched on the day: the test is not vacuous
    for warehouse in M.WAREHOUSES:
        mart = M.AUDIENCE_MARTS["audience_channel"]
        io = env["resources"][warehouse]  # the warehouse resource reads what its IO manager wrote
        got = io.read_frame(TableSpec.from_metadata("audience_channel", mart.metadata(warehouse)), [D])
        whole = got[got["daypart"] == "all"].set_index("channel_id")
        assert set(whole["universe"].astype(int)) == {universe}
        seen = whole[whole["minutes"].astype(int) > 0]
        assert sorted(seen.index.astype(int)) == sorted(per.index.astype(int))
        m = per["minutes"].reindex(seen.index.astype(int)).to_numpy()
        r = per["reach"].reindex(seen.index.astype(int)).to_numpy()
        assert (seen["minutes"].astype(int).to_numpy() == m).all(), warehouse
        assert (seen["reach"].astype(int).to_numpy() == r).all(), warehouse
        assert seen["ama"].astype(float).to_numpy() == pytest.approx(m / 1440)
        assert seen["tvr_pct"].astype(float).to_numpy() == pytest.approx(100 * m / (1440 * universe))
        assert seen["reach_pct"].astype(float).to_numpy() == pytest.approx(100 * r / universe)
        assert seen["share_pct"].astype(float).to_numpy() == pytest.approx(100 * m / total)
        assert seen["ats_universe_min"].astype(float).to_numpy() == pytest.approx(m / universe)
        assert seen["ats_viewer_min"].astype(float).to_numpy() == pytest.approx(m / r)
        # every channel of the reference has its row (zeros for the unwatched), in every daypart
        assert len(got) == len(env["channels"]) * 7


def _pandas_reach(credited: pd.DataFrame, threshold: int, daypart_of) -> dict[tuple[str, int], int]:
    """Reach at ``threshold`` done again with pandas: per (daypart or ``all``, channel) the viewers with a run of at
    least ``threshold`` consecutive credited minutes on the channel (a daypart's runs end where the daypart does)."""
    c = credited.sort_values(["user", "channel", "minute"]).reset_index(drop=True)
    c["daypart"] = [daypart_of(m) for m in c["minute"]]
    out = {}
    for part, cut in (("all", None), ("daypart", "daypart")):
        same = (c["user"] == c["user"].shift()) & (c["channel"] == c["channel"].shift()) & \
               (c["minute"] == c["minute"].shift() + 1)
        if cut:
            same &= c[cut] == c[cut].shift()
        c["run"] = (~same).cumsum()
        runs = c.groupby("run").agg(user=("user", "first"), channel=("channel", "first"),
                                    daypart=("daypart", "first"), n=("minute", "size"))
        runs = runs[runs["n"] >= threshold]
        keys = runs.assign(daypart="all") if part == "all" else runs
        for (dp, ch), users in keys.groupby(["daypart", "channel"])["user"]:
            out[(dp, int(ch))] = users.nunique()
    return out


@pytest.mark.parametrize("threshold", [3, 15])
def test_reach_at_a_threshold_equals_pandas_runs(env, run, threshold):
    """Reach needs ``threshold`` consecutive minutes (docs/measures.md): the Spark measure of the seed's day, from the
    lake's credited minutes, against runs of pandas' own credited minutes — per channel, whole day and each daypart
    (runs that cross a programme or daypart boundary count whole for the day and split for the dayparts)."""
    from tv_platform.lake import aggregates as A
    from tv_platform.lake.calendar import BroadcastCalendar

    cal = BroadcastCalendar.from_settings()
    expected = _pandas_reach(_pandas_credited_minutes(env["events"], D, start_hour=0), threshold, cal.daypart_of)
    assert sum(expected.values()) > 1_000  # not vacuous
    cat = env["resources"]["hive"].catalog()
    got = A.audience_channel(cat.read("audience_minutes", [D]), cat.read("audience_universe", [D]), cal, threshold,
                             D).toPandas()
    reached = {(r.daypart, int(r.channel_id)): int(r.reach) for r in got.itertuples() if int(r.reach) > 0}
    assert reached == expected
