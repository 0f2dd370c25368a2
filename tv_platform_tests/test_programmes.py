"""Viewing attributed to programmes, on the real stack (Spark Connect + Hive metastore, HDFS).

Expected values are computed here independently: literally for the hand-made sessions, and for random sessions by
numpy over seconds (each second of a session looked up in a per-second programme index of the guide)."""

import uuid
from datetime import datetime

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tv_platform.engines.hdfs import HdfsCsvIOManager
from tv_platform.engines.spark import HiveIOManager, HiveResource
from tv_platform.epg import attribution as EA
from tv_platform.epg.generator import make_guide
from tv_platform.lake import tables as T

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

D = "2023-09-23"
P = "2023-09-22"
GUIDE_SCHEMA = ("channel_id int, programme_id string, title string, kind string, genre string, series string, "
                "episode int, start timestamp, `end` timestamp, dt string")
SESSION_SCHEMA = ", ".join(f"{c} {t.lower()}" for c, t in T.SESSION_COLUMNS) + ", dt string"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _g(ch, pid, title, kind, start, end, series="", episode=0, day=D):
    return (ch, pid, title, kind, "", series, episode, ts(start), ts(end), day)


HAND_GUIDE = [
    _g(1, "z", "Поздний фильм", "film", "2023-09-22 00:00", "2023-09-22 22:00", day=P),
    _g(1, "y", "Ночное шоу", "show", "2023-09-22 22:00", "2023-09-23 00:00", "Ночное шоу", 7, day=P),
    _g(1, "a", "Новости", "news", "2023-09-23 00:00", "2023-09-23 00:30"),
    _g(1, "b", "Тайны. Серия 3", "series", "2023-09-23 00:30", "2023-09-23 01:00", "Тайны", 3),
    _g(1, "c", "Документальный", "documentary", "2023-09-23 01:00", "2023-09-23 12:00"),
    _g(1, "d", "Тайны. Серия 4", "series", "2023-09-23 12:00", "2023-09-24 00:00", "Тайны", 4),
    _g(2, "x", "Утро", "show", "2023-09-23 00:00", "2023-09-23 21:00"),
    _g(2, "s", "Тайны. Серия 9", "series", "2023-09-23 21:00", "2023-09-23 22:00", "Тайны", 9),
    _g(2, "f", "Фильм", "film", "2023-09-23 22:00", "2023-09-24 00:00"),
]


def _s(sid, user, ch, start, end):
    a, b = ts(start), ts(end)
    return (sid, user, f"u{user}", ch, f"ch{ch}", a, b, int((b - a).total_seconds()), a == b, b.date() > a.date(),
            "history", a.date().isoformat())


HAND_SESSIONS = [
    # spans midnight and three programmes of D (and one of D-1): 20 min on D-1, then a 30 + b 30 + c 10 on D
    _s("s3", 1, 1, "2023-09-22 23:40:00", "2023-09-23 01:10:00"),
    _s("s_in", 2, 1, "2023-09-23 10:05:00", "2023-09-23 10:20:30"),  # inside c
    _s("s_zero", 3, 1, "2023-09-23 12:00:00", "2023-09-23 12:00:00"),  # zero-length at a boundary: d
    _s("s_next", 1, 2, "2023-09-23 20:50:00", "2023-09-24 00:30:00"),  # x 10, s 60, f 120; after midnight not D's
    _s("s_none", 4, 9, "2023-09-23 05:00:00", "2023-09-23 07:30:00"),  # channel without a guide
    _s("s_mid", 5, 1, "2023-09-22 21:00:00", "2023-09-23 00:00:00"),  # ends at midnight: nothing on D
]
EXPECTED_D = {  # (session, programme) -> seconds
    ("s3", "a"): 1800, ("s3", "b"): 1800, ("s3", "c"): 600,
    ("s_in", "c"): 930,
    ("s_zero", "d"): 0,
    ("s_next", "x"): 600, ("s_next", "s"): 3600, ("s_next", "f"): 7200,
    ("s_none", "9-none"): 9000,
}
EXPECTED_P = {("s3", "y"): 1200, ("s_mid", "z"): 3600, ("s_mid", "y"): 7200}


@pytest.fixture(scope="module")
def hand(spark):
    return spark.createDataFrame(HAND_SESSIONS, SESSION_SCHEMA), spark.createDataFrame(HAND_GUIDE, GUIDE_SCHEMA)


def _attributed(sessions, guide, day):
    rows = EA.attribute(sessions, guide.where(f"dt = '{day}'"), day).toPandas()
    return rows, {(r.session_id, r.programme_id): int(r.seconds) for r in rows.itertuples()}


def test_hand_made_sessions_split_at_programme_boundaries(hand):
    sessions, guide = hand
    rows, got = _attributed(sessions, guide, D)
    assert got == EXPECTED_D
    assert list(rows.columns) == [c for c, _ in EA.ET.PROGRAMME_VIEWING_COLUMNS] + ["dt"]
    s3 = rows[rows.session_id == "s3"].sort_values("watch_start")
    assert [str(t) for t in s3.watch_start] == ["2023-09-23 00:00:00", "2023-09-23 00:30:00", "2023-09-23 01:00:00"]
    assert [str(t) for t in s3.watch_end] == ["2023-09-23 00:30:00", "2023-09-23 01:00:00", "2023-09-23 01:10:00"]
    assert set(s3.session_dt) == {P} and s3.minutes.sum() == pytest.approx(70)
    b = rows[rows.programme_id == "b"].iloc[0]
    assert (b.series, b.episode, b.kind) == ("Тайны", 3, "series")
    assert pd.isna(rows[rows.programme_id == "a"].iloc[0].series)  # one-off: no series
    none = rows[rows.programme_id == "9-none"].iloc[0]
    assert none.kind == "unknown" and str(none.programme_start) == f"{D} 00:00:00"
    # the day before: the part of s3 before midnight, and s_mid
    _, got_p = _attributed(sessions, guide, P)
    assert got_p == EXPECTED_P


def test_popularity_and_heatmap_hand_made(hand):
    sessions, guide = hand
    viewing = EA.attribute(sessions, guide.where(f"dt = '{D}'"), D).cache()
    pop = EA.programme_popularity(viewing, guide.where(f"dt = '{D}'"), D).toPandas().set_index("programme_id")
    assert len(pop) == 8  # 7 programmes of D + the pseudo programme of channel 9
    assert pop.loc["c", "minutes"] == pytest.approx((600 + 930) / 60) and pop.loc["c", "viewers"] == 2
    assert pop.loc["c", "avg_minute_audience"] == pytest.approx((600 + 930) / (11 * 3600))
    assert pop.loc["d", "sessions"] == 1 and pop.loc["d", "minutes"] == 0
    # channel 1 on D: 30 + 30 + 10 + 15.5 min
    assert pop.loc["c", "channel_share_pct"] == pytest.approx(100 * 25.5 / 85.5)
    # all viewing during c (01:00-12:00): s3 10 min, s_in 15.5, s_none 150 -> c's share of it
    assert pop.loc["c", "tv_share_pct"] == pytest.approx(100 * 25.5 / 175.5)
    assert pop.loc["s", "tv_share_pct"] == pytest.approx(100.0)  # nobody else watched 21:00-22:00
    assert (pop.loc["9-none", "rank"], pop.loc["f", "rank"], pop.loc["s", "rank"]) == (1, 2, 3)  # 150, 120, 60 min
    series = EA.series_popularity(viewing, EA.programme_popularity(viewing, guide.where(f"dt = '{D}'"), D), D)
    ser = series.toPandas().set_index("series")
    assert ser.loc["Тайны", "airings"] == 3 and ser.loc["Тайны", "channels"] == 2
    assert ser.loc["Тайны", "minutes"] == pytest.approx(30 + 0 + 60) and ser.loc["Тайны", "viewers"] == 2
    heat = EA.series_weekday_hour(viewing, D).toPandas()
    cells = {(r.series, r.hour): r.minutes for r in heat.itertuples()}
    assert cells == {("Тайны", 0): 30.0, ("Тайны", 12): 0.0, ("Тайны", 21): 60.0}
    assert set(heat.weekday) == {6} and set(heat.weekday_name) == {"Sat"}
    viewing.unpersist()


def test_random_sessions_equal_brute_force_over_seconds(spark):
    """Random sessions on the synthetic guide of three channels: every (session, programme) seconds equals the count
    of the session's seconds in D whose programme (per-second lookup) is that one."""
    rng = np.random.default_rng(7)
    channels = pd.DataFrame({"channel_id": [1, 10, 36], "channel_name": ["Россия 1", "Россия 24", "Кинопоказ"]})
    guide = make_guide(D, 42, channels).assign(dt=D)
    midnight = pd.Timestamp(D)
    n = 300
    start_s = rng.integers(-6 * 3600, 86_400, n)
    length = np.where(rng.random(n) < 0.05, 0, rng.integers(1, 5 * 3600, n))
    ch = rng.choice([1, 10, 36], n)
    rows = []
    for i in range(n):
        a = midnight + pd.Timedelta(seconds=int(start_s[i]))
        b = a + pd.Timedelta(seconds=int(length[i]))
        rows.append(_s(f"r{i}", int(i % 50), int(ch[i]), str(a), str(b)))
    sessions = spark.createDataFrame(rows, SESSION_SCHEMA)
    g = spark.createDataFrame(guide.astype({"start": "datetime64[us]", "end": "datetime64[us]"}), GUIDE_SCHEMA)
    _, got = _attributed(sessions, g, D)

    expected = {}
    for c in (1, 10, 36):  # per-second programme index of the day
        gc = guide[guide.channel_id == c]
        idx = np.empty(86_400, dtype=object)
        for r in gc.itertuples():
            idx[int((r.start - midnight).total_seconds()):int((r.end - midnight).total_seconds())] = r.programme_id
        for i in np.flatnonzero(ch == c):
            a, b = int(start_s[i]), int(start_s[i] + length[i])
            if a == b:
                if 0 <= a < 86_400:
                    expected[(f"r{i}", idx[a])] = 0
                continue
            lo, hi = max(a, 0), min(b, 86_400)
            if hi <= lo:
                continue
            ids, counts = np.unique(idx[lo:hi].astype(str), return_counts=True)
            for pid, k in zip(ids, counts):
                expected[(f"r{i}", pid)] = int(k)
    assert got == expected
    assert len({k[0] for k in got}) > 200


# ---------------------------------------------------------------------------------------------------------------------
# the graph: guide -> Hive -> programme_viewing (+ check) -> aggregates (+ checks)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(stack, spark, lake):
    suffix = uuid.uuid4().hex[:8]
    root = f"/tv_platform_test_prog_{suffix}"
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_test_prog_{suffix}", lake_url=stack.hdfs_url,
                        lake_root=root, webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    resources = {
        "hive": hive,
        "hive_io_manager": HiveIOManager(spark_remote=stack.spark_remote, database=hive.database,
                                         database_location=hive.resolved_database_location()),
        "hdfs_io_manager": HdfsCsvIOManager(hdfs_url=stack.hdfs_url, webhdfs_url=stack.webhdfs_url,
                                            user=stack.hdfs_user, lake_root=root),
    }
    # viewing sessions of D-1 and D as the lake writes them: random sessions on real channel ids
    rng = np.random.default_rng(11)
    n = 2_000
    midnight = pd.Timestamp(D)
    start_s = rng.integers(-86_400, 86_400, n)
    length = np.where(rng.random(n) < 0.03, 0, rng.integers(1, 4 * 3600, n))
    rows = []
    for i in range(n):
        a = midnight + pd.Timedelta(seconds=int(start_s[i]))
        rows.append(_s(f"g{i}", int(rng.integers(1, 300)), int(rng.integers(1, 149)), str(a),
                       str(a + pd.Timedelta(seconds=int(length[i])))))
    frame = spark.createDataFrame(rows, SESSION_SCHEMA)
    hive.catalog().write("viewing_sessions", frame, [P, D])
    yield {"hive": hive, "resources": resources, "sessions": pd.DataFrame(rows, columns=[
        c for c, _ in T.SESSION_COLUMNS] + ["dt"])}
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(root)


@pytest.fixture(scope="module")
def graph_run(env):
    from tv_platform.assets import lake as L
    from tv_platform.assets import programmes as PR

    return dg.materialize([L.sessionize_assets, *PR.assets], partition_key=D, resources=env["resources"],
                          selection=dg.AssetSelection.groups("programmes"))


def test_graph_checks_pass_and_minutes_are_conserved(spark, env, graph_run):
    assert graph_run.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in graph_run.get_asset_check_evaluations()}
    assert set(checks) == {("hive_programme_guide", "guide_covers_day"), ("programme_viewing", "minutes_conserved"),
                           ("programme_popularity", "consistent_with_viewing"),
                           ("series_weekday_hour", "consistent_with_viewing")}
    assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items() if not c.passed}
    db = env["hive"].database
    guide = spark.table(f"{db}.programme_guide").where(f"dt = '{D}'").toPandas()
    assert len(guide) == len(make_guide(D, 42)) and guide["channel_id"].nunique() == 148
    # independent total: each session clipped to D with pandas
    s = env["sessions"]
    lo, hi = pd.Timestamp(D), pd.Timestamp(D) + pd.Timedelta(days=1)
    st, en = pd.to_datetime(s["time_start"]), pd.to_datetime(s["time_end"])
    inside = (en.clip(upper=hi) - st.clip(lower=lo)).dt.total_seconds().clip(lower=0)
    got = spark.sql(f"SELECT sum(seconds) AS s, count(DISTINCT session_id) AS n FROM {db}.programme_viewing "
                    f"WHERE dt = '{D}'").collect()[0]
    assert int(got["s"]) == int(inside.sum())
    overlapping = ((en > st) & (en > lo) & (st < hi)) | ((en == st) & (st >= lo) & (st < hi))
    assert int(got["n"]) == int(overlapping.sum())
    pop = spark.sql(f"SELECT count(*) AS n, sum(minutes) AS m FROM {db}.programme_popularity WHERE dt = '{D}'") \
        .collect()[0]
    assert int(pop["n"]) == len(guide) and pop["m"] == pytest.approx(inside.sum() / 60)
    top = spark.table(f"{db}.top_programmes").where(f"dt = '{D}'").toPandas()
    assert sorted(top.chart.unique()) == ["programme", "series"] and len(top) == 20


def test_weekly_top_query(spark, env, graph_run):
    from tv_platform.epg.queries import weekly_top_sql

    db = env["hive"].database
    top = spark.sql(weekly_top_sql(db, "2023-09-18", "2023-09-24", by="series", n=5)).toPandas()
    assert list(top["rank"]) == [1, 2, 3, 4, 5] and top["minutes"].is_monotonic_decreasing
    daily = spark.table(f"{db}.series_popularity").where(f"dt = '{D}' AND rank <= 5").toPandas().sort_values("rank")
    assert list(top["series"]) == list(daily["series"])  # one day in the week: same ranking
    shows = spark.sql(weekly_top_sql(db, "2023-09-18", "2023-09-24", by="title", n=3)).toPandas()
    assert len(shows) == 3 and {"title", "channel_name"} <= set(shows.columns)


def test_programme_marts_load_both_warehouses_and_agree_with_the_lake(stack, spark, env, graph_run):
    """The programme tables reach Greenplum (PostgreSQL) and ClickHouse like the other aggregates, and every mart's
    check (row count and sums against the lake) passes."""
    import psycopg2

    from tv_platform.assets import lake as L
    from tv_platform.assets import programmes as PR
    from tv_platform.resources import get_resources
    from tv_platform.stack.clickhouse import clickhouse_client

    assert graph_run.success
    platform = get_resources(stack)
    resources = {**env["resources"], **{k: platform[k] for k in
                                        ("greenplum", "clickhouse", "greenplum_io_manager", "clickhouse_io_manager")}}
    marts = dg.materialize([L.sessionize_assets, *PR.assets, *PR.mart_assets], partition_key=D,
                           resources=resources,
                           selection=dg.AssetSelection.assets(*[k for a in PR.mart_assets for k in a.keys]))
    assert marts.success
    checks = marts.get_asset_check_evaluations()
    assert len(checks) == sum(len(a.keys) for a in PR.mart_assets) == 8
    assert all(c.passed for c in checks), [c.metadata for c in checks if not c.passed]

    db = env["hive"].database
    lake_rows = spark.sql(f"SELECT count(*) AS n, sum(minutes) AS m FROM {db}.programme_popularity "
                          f"WHERE dt = '{D}'").collect()[0]
    with psycopg2.connect(stack.gp_dsn("reader")) as conn, conn.cursor() as cur:  # what dashboards read
        cur.execute(f"SELECT count(*), sum(minutes) FROM {stack.gp_schema}.programme_popularity WHERE dt = %s", (D,))
        pg_rows, pg_minutes = cur.fetchone()
    with clickhouse_client(stack) as client:
        ch_rows, ch_minutes = client.query(
            f"SELECT count(), sum(minutes) FROM programme_popularity WHERE dt = '{D}'").result_rows[0]
    assert pg_rows == ch_rows == lake_rows["n"]
    assert float(pg_minutes) == pytest.approx(lake_rows["m"]) and ch_minutes == pytest.approx(lake_rows["m"])
