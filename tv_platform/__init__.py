"""tv_platform: IPTV viewing analytics as a Dagster asset graph."""

__version__ = "0.1.0"
