"""Dashboards in a real browser: Playwright for Python driving Debian's Chromium (``executable_path``; Playwright's own
browser download is never used), for the tests, ``tv-platform superset screenshot`` and the Dagster UI test.

:func:`render_dashboard` logs in (the login form's session cookie), opens a dashboard, waits until every chart has
drawn, failed or come back empty and every ``/api/v1/chart/data`` request has its answer, and reports each chart's
state, what the chart-data responses held (status, row counts, errors) and the query context each chart sent; it can
save a screenshot of the whole dashboard.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tv_platform.engines.superset.client import SupersetClient
from tv_platform.engines.superset.conf import SupersetSettings
from tv_platform.processes import StackError

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (``apt-get install chromium``), the browser Playwright drives."""

#: flags that keep Chromium quiet on a machine without internet (without them it retries Google endpoints forever)
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--metrics-recording-only",
)


def chromium_binary() -> str | None:
    found = shutil.which("chromium") or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    return found


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


class Browser:
    """Headless Chromium through Playwright (sync API), one browser context per page; a context manager."""

    def __init__(self, executable: str | None = None):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=executable or ensure_chromium(),
                                                             headless=True, args=list(CHROMIUM_ARGS))
        except BaseException:
            self._playwright.stop()
            raise

    def new_page(self, width: int = 1600, height: int = 1000):
        """A page in a fresh context (its own cookies); closing the page's context closes the page."""
        context = self.browser.new_context(viewport={"width": width, "height": height})
        return context.new_page()

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The state of every chart holder on a dashboard page.
_CHART_STATE = r"""
() => {
  const holders = [...document.querySelectorAll('[data-test="dashboard-component-chart-holder"]')]
    .filter(h => h.querySelector('[data-test-chart-id]'));
  const charts = holders.map(h => {
    const titleEl = h.querySelector('[data-test="editable-title"], .header-title, .editable-title');
    const idEl = h.querySelector('[data-test-chart-id]');
    const idMatch = idEl ? idEl.getAttribute('data-test-chart-id') : null;
    const errorEl = h.querySelector(
      '.ant-alert-error, [data-test="error-alert"], [data-test="errorMessage"], .error-alert');
    const text = h.innerText || '';
    const loading = !!h.querySelector('.loading, [data-test="loading-indicator"], [aria-label="Loading"]');
    const empty = !!h.querySelector('.empty-state, [data-test="empty-state"]')
      || /No results were returned/i.test(text);
    const drawn = !!h.querySelector('canvas, svg, table');
    return {title: ((titleEl || {}).textContent || '').trim(), chart_id: idMatch ? Number(idMatch) : null, loading,
            empty, drawn, error: errorEl ? (errorEl.innerText || 'error').slice(0, 500) : null};
  });
  const pageErrors = [...document.querySelectorAll('.ant-alert-error, [data-test="toast-container"] .toast--danger')]
    .filter(e => !e.closest('[data-test="dashboard-component-chart-holder"]')).map(e => e.innerText.slice(0, 300));
  return {charts, pageErrors};
}
"""


class ChartDataLog:
    """Every ``/api/v1/chart/data`` request a page makes: the query context it sent and, once finished, its answer."""

    def __init__(self, page):
        self.requests: list[Any] = []
        self.finished: set[int] = set()
        page.on("request", self._request)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._finished)

    def _request(self, request) -> None:
        if "/api/v1/chart/data" in request.url and request.method == "POST":
            self.requests.append(request)

    def _finished(self, request) -> None:
        self.finished.add(id(request))

    @staticmethod
    def _form_data(request) -> dict[str, Any]:
        try:
            return (request.post_data_json or {}).get("form_data") or {}
        except ValueError:
            return {}

    def slices(self) -> set[int]:
        return {self._form_data(r).get("slice_id") for r in self.requests}

    def done(self) -> bool:
        return all(id(r) in self.finished for r in self.requests)

    def entries(self) -> list[dict[str, Any]]:
        """Per request: slice_id, viz_type, HTTP status, the row count of each query, errors."""
        out = []
        for r in self.requests:
            form = self._form_data(r)
            entry: dict[str, Any] = {"slice_id": form.get("slice_id"), "viz_type": form.get("viz_type"),
                                     "status": None, "rows": [], "errors": []}
            response = r.response()
            if response is None:
                entry["errors"].append(f"no response: {r.failure}")
            else:
                entry["status"] = response.status
                try:
                    body = response.json()
                except Exception as exc:  # noqa: BLE001 - reported as the chart's problem
                    body = {}
                    entry["errors"].append(f"unreadable response: {exc}")
                for res in body.get("result") or []:
                    entry["rows"].append(res.get("rowcount"))
                    if res.get("error"):
                        entry["errors"].append(res["error"])
                if body.get("message"):
                    entry["errors"].append(str(body["message"]))
                entry["errors"] += [e.get("message") or str(e) for e in body.get("errors") or []]
            out.append(entry)
        return out

    def query_contexts(self) -> dict[int, dict[str, Any]]:
        return {self._form_data(r)["slice_id"]: r.post_data_json for r in self.requests
                if self._form_data(r).get("slice_id") is not None}


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
                     browser: Browser | None = None, data_mask: dict[str, Any] | None = None, width: int = 1600,
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
    browser = browser or Browser()
    t0 = time.monotonic()
    shot = None
    try:
        page = browser.new_page(width=width, height=height)
        try:
            page.context.add_cookies([{"name": "session", "value": cookie, "url": conf.url, "httpOnly": True}])
            log = ChartDataLog(page)
            page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
            state = _wait_settled(page, log, expected, timeout)
            if screenshot:
                content = page.evaluate("document.documentElement.scrollHeight") or height
                if content > height:  # taller than the viewport: grow it, and let the charts lay out again
                    page.set_viewport_size({"width": width, "height": int(content)})
                    state = _wait_settled(page, log, expected, timeout)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                shot = screenshot
            data, contexts = log.entries(), log.query_contexts()
        finally:
            page.context.close()
    finally:
        if own:
            browser.close()
    return DashboardRender(slug=slug, url=url, screenshot=shot, seconds=time.monotonic() - t0,
                           charts=state.get("charts", []), data=data, page_errors=state.get("pageErrors", []),
                           expected=sorted(expected), timed_out=bool(state.get("timed_out")),
                           query_contexts=contexts)


def _wait_settled(page, log: ChartDataLog, expected: set[int], timeout: float, quiet: float = 2.0) -> dict[str, Any]:
    """Poll the page until every expected chart has drawn, failed or come back empty, and every chart-data request
    has its answer — then ``quiet`` seconds more (ECharts' entry animation). Returns the last state seen."""
    deadline = time.monotonic() + timeout
    settled_since = None
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        state = page.evaluate(_CHART_STATE)
        charts = {c["chart_id"]: c for c in state["charts"] if c["chart_id"] is not None}
        done = (expected <= set(charts)
                and all(not c["loading"] and (c["drawn"] or c["error"] or c["empty"]) for c in charts.values())
                and log.done() and expected <= log.slices())
        if done:
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= quiet:
                return state
        else:
            settled_since = None
    state["timed_out"] = True
    return state
