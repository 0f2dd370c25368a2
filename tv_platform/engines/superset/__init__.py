"""Superset over the marts: dashboards as code (``superset_exports/``), imported into a real Superset 6.1.

One module per concern:

=============  ===========================================================================================
``conf``       ``TVP_SUPERSET_*`` settings, the admin password (generated once, mode 0600; no default)
``service``    the service: its own virtualenv, metadata and secrets under the state directory, gunicorn;
               :func:`superset_up` (``tv-platform superset up``)
``bundle``     ``superset_exports/`` adapted to the settings (URIs, schemas, passwords) and imported
``client``     the REST API, logged in
``browser``    dashboards in headless Chromium through Playwright: every chart's state, data and a screenshot
``cli``        ``tv-platform superset …`` parsing and dispatch
=============  ===========================================================================================

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
from tv_platform.engines.superset.cli import add_superset_parser, superset_command
from tv_platform.engines.superset.client import SupersetClient
from tv_platform.engines.superset.conf import SUPERSET_ENV_VARS, SupersetSettings
from tv_platform.engines.superset.service import (
    PINS,
    SupersetService,
    fix_sqlite_dataset_uniqueness,
    superset_up,
)
from tv_platform.stack.base import StackError

__all__ = [
    "BUNDLE_DIR", "MASK", "PINS", "SUPERSET_ENV_VARS", "Browser", "DashboardRender", "StackError", "SupersetClient",
    "SupersetService", "SupersetSettings", "add_superset_parser", "database_uri", "ensure_chromium", "filter_state",
    "fix_sqlite_dataset_uniqueness", "import_bundle", "load_bundle", "render_bundle", "render_dashboard",
    "superset_command", "superset_up",
]
