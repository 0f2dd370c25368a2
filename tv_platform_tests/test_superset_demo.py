"""After the demo, as a new user sees it: ``tv-platform demo --days 2 --events 5000 --exit`` (the quick run), then
``tv-platform superset screenshot``, then both dashboards in a real browser (Playwright) — every chart of both has
data and no error, on the data the demo built (the lake, the programme guide of today, the marts, the analytics and
the forecast), not on a fixture.

The demo runs as a user runs it, in a subprocess, but on names of this module's own so it never touches the
platform's data or anybody's Dagster: its own Dagster instance database, lake root, Hive database, Kafka topic,
warehouse schema / ClickHouse database, and the tests' Superset (port 8089, metadata under ``<state>/tests``).
Fewer simulated subscribers (500) keep it within a CI budget; the lake still gets the forecast's 24 days.

The screenshots the browser test takes are the ones in docs/img/ (docs/superset.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tv_platform.engines import superset as S
from tv_platform.stack import superset as superset_service

pytestmark = [pytest.mark.services, pytest.mark.long]

NAME = "tv_demo_test"
DASHBOARDS = {"greenplum": "tv-greenplum", "clickhouse": "tv-clickhouse"}
DEMO_TIMEOUT = 3600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(stack) -> dict[str, str]:
    """The environment of this module's demo: every name that holds data is its own."""
    return {
        "TVP_DAGSTER_PG_DATABASE": f"{NAME}_dagster",
        "TVP_LAKE_ROOT": f"/{NAME}",
        "TVP_HIVE_DATABASE": NAME,
        "TVP_KAFKA_TOPIC": f"{NAME}_events",
        "TVP_GP_SCHEMA": f"{NAME}_marts",
        "TVP_CLICKHOUSE_DATABASE": f"{NAME}_marts",
        "TVP_SIM_USERS": "500",
        "TVP_SUPERSET_PORT": os.environ.get("TVP_TEST_SUPERSET_PORT", "8089"),
        "TVP_SUPERSET_HOME": str(stack.state_dir / "tests" / "superset"),
    }


def _prepare_postgres(stack, env: dict[str, str]) -> None:
    """The demo's Dagster database and warehouse schema (the platform's roles may not create them)."""
    from tv_platform.stack.postgres import PostgresService
    from tv_platform_tests.conftest import create_warehouse_schema

    pg = PostgresService(stack)
    admin = pg.admin_connect()
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (env["TVP_DAGSTER_PG_DATABASE"],))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{env["TVP_DAGSTER_PG_DATABASE"]}" OWNER "{stack.dagster_pg_user}"')
    finally:
        admin.close()
    create_warehouse_schema(stack, env["TVP_GP_SCHEMA"])


@pytest.fixture(scope="module")
def demo(stack, artifacts_dir):
    """The quick demo run to its end; yields (the demo's settings, Superset's settings). Superset is stopped at the
    end if it was not running before."""
    from dataclasses import replace

    env = demo_env(stack)
    _prepare_postgres(stack, env)
    settings = replace(stack, gp_schema=env["TVP_GP_SCHEMA"], clickhouse_database=env["TVP_CLICKHOUSE_DATABASE"])
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        conf = S.SupersetSettings.from_env(stack)
    svc = superset_service.SupersetService(stack, conf=conf)
    was_running = svc.running()
    log = artifacts_dir / "demo-quick.log"
    tv_platform = Path(sys.executable).with_name("tv-platform")
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.run([str(tv_platform), "demo", "--days", "2", "--events", "5000", "--exit", "--port",
                               str(_free_port())], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                              timeout=DEMO_TIMEOUT)
    text = log.read_text(errors="replace")
    print(f"demo: exit {proc.returncode} in {time.monotonic() - t0:.0f} s (log: {log})")
    assert proc.returncode == 0, text[-3000:]
    assert "superset: up" in text and "not started" not in text, text[-3000:]
    try:
        yield settings, conf
    finally:
        if not was_running:
            svc.stop()


def test_the_demo_generates_the_admin_password_and_shows_it_once(demo):
    """No default password: unless TVP_SUPERSET_ADMIN_PASSWORD is set, the password is the generated one (mode 0600)
    and `admin`/`admin` does not log in."""
    _, conf = demo
    if conf.admin_password_env:
        pytest.skip("TVP_SUPERSET_ADMIN_PASSWORD is set here")
    assert (conf.password_file.stat().st_mode & 0o777) == 0o600
    assert conf.admin_password != "admin"
    with pytest.raises(S.StackError, match="login"):
        S.SupersetClient(S.SupersetSettings(**{**conf.__dict__, "admin_password_env": "admin"}))


def test_superset_screenshot_after_the_demo_reports_no_problem(demo, artifacts_dir):
    """`tv-platform superset screenshot` after the demo: exit 0 means every chart of every dashboard drew rows."""
    env = {**os.environ, **demo_env(demo[0])}
    out = artifacts_dir / "superset-demo"
    proc = subprocess.run([str(Path(sys.executable).with_name("tv-platform")), "superset", "screenshot", "--out",
                           str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for slug in DASHBOARDS.values():
        assert (out / f"superset-{slug}.png").stat().st_size > 50_000


@pytest.fixture(scope="module")
def rendered(demo, artifacts_dir) -> dict[str, S.DashboardRender]:
    _, conf = demo
    out = {}
    with S.Browser() as browser:
        for wh, slug in DASHBOARDS.items():
            out[wh] = S.render_dashboard(slug, artifacts_dir / f"superset-demo-{slug}.png", conf, browser=browser)
    return out


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_every_chart_of_the_dashboard_has_data_and_no_error(demo, rendered, warehouse):
    """In the browser, on the demo's data: every chart of the dashboard is on the page, drawn, without an error, and
    its chart-data request answered 200 with rows."""
    _, conf = demo
    res = rendered[warehouse]
    assert not res.problems, res.problems
    charts = {c["id"]: c["slice_name"] for c in S.SupersetClient(conf).dashboard_charts(DASHBOARDS[warehouse])}
    on_page = {c["chart_id"]: c for c in res.charts}
    assert set(on_page) == set(charts)
    for cid, title in charts.items():
        c = on_page[cid]
        assert c["drawn"] and not c["error"] and not c["empty"] and not c["loading"], (title, c)
    answered = {d["slice_id"]: d for d in res.data}
    for cid, title in charts.items():
        d = answered.get(cid)
        assert d is not None, f"{title}: no chart-data request"
        assert d["status"] == 200 and not d["errors"] and any(d["rows"]), (title, d)
    assert res.screenshot is not None and res.screenshot.stat().st_size > 50_000


@pytest.mark.parametrize("warehouse", list(DASHBOARDS))
def test_the_demo_data_fill_the_charts_the_issue_found_empty(demo, rendered, warehouse):
    """The forecast against actual has actuals and both models' forecasts; today's top programmes are programmes, not
    the guide's gap; the top-N heatmaps show the default 20."""
    import pandas as pd

    _, conf = demo
    client = S.SupersetClient(conf)
    by_title = {c["slice_name"]: c["id"] for c in client.dashboard_charts(DASHBOARDS[warehouse])}

    def data(title: str) -> pd.DataFrame:
        return pd.DataFrame(client.chart_data(by_title[title])["result"][0]["data"])

    line = data("Forecast against actual (total hours per day)")
    assert {"actual", "seasonal_naive", "calendar_ridge"} <= set(line.columns)
    top = data("Top 10 programmes of the day")
    today = pd.Timestamp.now().normalize()
    names = set(top.loc[pd.to_datetime(top["dt"], unit="ms" if top["dt"].dtype != object else None) == today,
                        "name"])
    assert names and "Нет данных EPG" not in names, names
    assert data("Top series by hour of day")["series"].nunique() == 20
    assert data("Top programmes by start hour")["programme_label"].nunique() == 20
