"""Superset over the marts: dashboards as code (``superset_exports/``), imported into a real Superset 6.1.

One module per concern; the engine side here, the service's lifecycle with the other services:

==============================  ==================================================================================
``conf``                        ``TVP_SUPERSET_*`` settings, the admin password (generated once, mode 0600; no
                                default)
``bundle``                      ``superset_exports/`` adapted to the settings (URIs, schemas, passwords) and imported
``client``                      the REST API, logged in
``browser``                     dashboards in headless Chromium through Playwright: every chart's state, data and a
                                screenshot
``tv_platform/stack/superset``  the service: its own virtualenv, metadata and secrets under the state directory,
                                gunicorn; :func:`~tv_platform.stack.superset.superset_up` (``tv-platform superset up``)
``tv_platform/superset_cli``    ``tv-platform superset …`` parsing and dispatch
==============================  ==================================================================================

Like every engine, this package never imports ``tv_platform.stack`` (``tv_platform_tests/test_import_rules.py``).

The names below are re-exported so callers say ``from tv_platform.engines import superset``.
"""

from tv_platform.engines.superset.browser import (
    Browser,
    DashboardRender,
    ensure_chromium,
    filter_state,
    render_dashboard,
)
from tv_platform.engines.superset.bundle import BUNDLE_DIR, MASK, database_uri, import_bundle, load_bundle, render_bundle
from tv_platform.engines.superset.client import SupersetClient
from tv_platform.engines.superset.conf import SUPERSET_ENV_VARS, SupersetSettings
from tv_platform.processes import StackError

__all__ = [
    "BUNDLE_DIR", "MASK", "SUPERSET_ENV_VARS", "Browser", "DashboardRender", "StackError", "SupersetClient",
    "SupersetSettings", "database_uri", "ensure_chromium", "filter_state", "import_bundle", "load_bundle",
    "render_bundle", "render_dashboard",
]
