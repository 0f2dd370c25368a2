"""The code location's settings: read from the environment once, when Dagster loads the code location.

This is the one place where importing the platform reads its settings (``tv_platform_tests/test_import_rules.py``
enforces it). Dagster's definitions are static, so what they are built from is fixed when the location loads: the daily
partitions (first day, the operator's zone), the schedules' zone, the automation's late-data horizon, the landing job's
run tags, the sensor's interval and the config defaults shown in the launchpad. Every module that needs a setting while
it is imported takes it from :data:`settings`; code that runs later (assets, checks, sensors) gets its values from its
resources and config, or reads the settings when it runs. The resources themselves are built from these settings in
``tv_platform/resources.py``, the one place where local and cluster deployments differ.

Change a ``TVP_*`` variable, then reload the code location (the Dagster UI's "Reload", or restart ``tv-platform dev``).
"""

from __future__ import annotations

from tv_platform.settings import Settings, get_settings

settings: Settings = get_settings()
"""The settings the definitions of this code location were built from."""
