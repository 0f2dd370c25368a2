"""Where things live in the lake and in Hive — the contract between ingest, lake and marts.

Paths are inside the lake's file system (``TVP_HDFS_URL`` + ``TVP_LAKE_ROOT``)::

    <root>/reference/channels/channels.csv              channel_id,channel_name,time_rating,viewers_rating,rank
    <root>/reference/users/users.csv                    user_id,user_name
    <root>/raw/tv_dataset/dt=YYYY-MM-DD/events.csv      history (simulator), one file per day
    <root>/raw/tv_stream/dt=YYYY-MM-DD/p<P>-<from>-<to>.csv     live events landed by the Kafka sensor, one file per offset range
    <root>/quarantine/tv_stream/dt=YYYY-MM-DD/p<P>-<from>-<to>.csv  bad messages with their reason

Raw event CSV files have a header row: ``session_id,user_id,channel_id,timer,status``; ``timer`` is
``YYYY-MM-DD HH:MM:SS`` (local time of the operator, no zone) and ``dt`` is the date of ``timer``.
"""

from __future__ import annotations

from tv_platform.settings import Settings, get_settings

EVENT_COLUMNS = ["session_id", "user_id", "channel_id", "timer", "status"]
QUARANTINE_COLUMNS = ["topic", "partition", "offset", "reason", "payload"]
STATUSES = ("enabled", "disabled")


def root(settings: "Settings | str | None" = None) -> str:
    """The lake's root directory: from the settings, or given directly (a resource's ``lake_root``)."""
    if isinstance(settings, str):
        return "/" + settings.strip("/")
    return "/" + (settings or get_settings()).lake_root.strip("/")


def channels_dir(settings: "Settings | str | None" = None) -> str:
    return f"{root(settings)}/reference/channels"


def users_dir(settings: "Settings | str | None" = None) -> str:
    return f"{root(settings)}/reference/users"


def raw_dir(source: str, settings: "Settings | str | None" = None) -> str:
    """Directory of a raw event source: ``tv_dataset`` (history) or ``tv_stream`` (live)."""
    return f"{root(settings)}/raw/{source}"


def quarantine_dir(source: str, settings: "Settings | str | None" = None) -> str:
    return f"{root(settings)}/quarantine/{source}"


def partition_dir(base: str, day: str) -> str:
    return f"{base}/dt={day}"


def range_file_name(partition: int, start: int, end: int) -> str:
    """File of one Kafka offset range [start, end): the name is the range, so a re-run rewrites the same file."""
    return f"p{partition}-{start:012d}-{end:012d}.csv"
