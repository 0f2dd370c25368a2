"""Superset of the compose deployment: metadata in PostgreSQL (superset-db), secrets from the environment."""
import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_DATABASE_URI"]
APP_NAME = "TV platform"
FEATURE_FLAGS = {
    "DASHBOARD_VIRTUALIZATION": False,
    "DASHBOARD_RBAC": False,
    "ALERT_REPORTS": False,
}
ROW_LIMIT = 50000
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
# behind a TLS-terminating proxy in production; plain HTTP inside the compose network
TALISMAN_ENABLED = True
WTF_CSRF_TIME_LIMIT = None
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
