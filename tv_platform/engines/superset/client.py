"""Superset's REST API, logged in (JWT bearer + CSRF token), and the web session a browser needs."""

from __future__ import annotations

import json
import re
from typing import Any

from tv_platform.engines.superset.conf import SupersetSettings
from tv_platform.processes import StackError


class SupersetClient:
    """A logged-in session on Superset's REST API (JWT bearer + CSRF token) and, for browsers, its web session."""

    def __init__(self, conf: SupersetSettings | None = None, timeout: float = 120.0):
        import requests

        self.conf = conf or SupersetSettings.from_env()
        self.base = self.conf.url
        self.timeout = timeout
        self.http = requests.Session()
        r = self.http.post(f"{self.base}/api/v1/security/login", timeout=timeout, json={
            "username": self.conf.admin_user, "password": self.conf.admin_password, "provider": "db", "refresh": False})
        if r.status_code != 200:
            raise StackError("superset",
                             f"login as {self.conf.admin_user!r} failed: HTTP {r.status_code} {r.text[:200]}")
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        r = self.http.get(f"{self.base}/api/v1/security/csrf_token/", timeout=timeout)
        r.raise_for_status()
        self.http.headers["X-CSRFToken"] = r.json()["result"]
        self.http.headers["Referer"] = self.base

    def _check(self, r, what: str):
        if r.status_code >= 400:
            raise StackError("superset", f"{what}: HTTP {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    def get(self, path: str, **params) -> Any:
        return self._check(self.http.get(f"{self.base}{path}", params=params or None, timeout=self.timeout), path)

    def post(self, path: str, payload: Any) -> Any:
        return self._check(self.http.post(f"{self.base}{path}", json=payload, timeout=self.timeout), path)

    def import_assets(self, payload: bytes, passwords: dict[str, str]) -> None:
        r = self.http.post(
            f"{self.base}/api/v1/assets/import/", timeout=self.timeout,
            files={"bundle": ("tv_platform_bundle.zip", payload, "application/zip")},
            data={"passwords": json.dumps(passwords), "overwrite": "true"},
        )
        if r.status_code != 200:
            # Superset's message may echo the config it refused, never the passwords (they are not in the files)
            raise StackError("superset", f"importing the bundle failed: HTTP {r.status_code} {r.text[:1500]}")

    def _list(self, path: str, columns: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            q = "(columns:!(" + ",".join(columns) + f"),page:{page},page_size:100)"
            res = self.get(path, q=q)
            out.extend(res["result"])
            if len(out) >= res["count"] or not res["result"]:
                return out
            page += 1

    def dashboards(self) -> list[dict[str, Any]]:
        return self._list("/api/v1/dashboard/", ["id", "uuid", "dashboard_title", "slug"])

    def charts(self) -> list[dict[str, Any]]:
        return self._list("/api/v1/chart/", ["id", "uuid", "slice_name", "viz_type"])

    def dashboard_charts(self, id_or_slug: str | int) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/dashboard/{id_or_slug}/charts")["result"]

    def chart_data(self, chart_id: int) -> dict[str, Any]:
        """GET /api/v1/chart/<id>/data — runs the chart's saved query context."""
        return self.get(f"/api/v1/chart/{chart_id}/data/", format="json", type="full")

    def web_session_cookie(self) -> str:
        """The ``session`` cookie of a browser login through the login form (for a headless browser)."""
        import requests

        web = requests.Session()
        page = web.get(f"{self.base}/login/", timeout=self.timeout)
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
            r'"csrf_token"\s*:\s*"([^"]+)"', page.text)
        data = {"username": self.conf.admin_user, "password": self.conf.admin_password}
        if match:
            data["csrf_token"] = match.group(1)
        r = web.post(f"{self.base}/login/", data=data, timeout=self.timeout, allow_redirects=False)
        cookie = web.cookies.get("session")
        if r.status_code not in (302, 303) or not cookie:
            raise StackError("superset", f"the login form refused {self.conf.admin_user!r}: HTTP {r.status_code}")
        check = web.get(f"{self.base}/api/v1/me/", timeout=self.timeout)
        if check.status_code != 200:
            raise StackError("superset", f"the web session is not logged in: HTTP {check.status_code}")
        return cookie

