"""Where things live in the lake and in Hive — the contract between ingest, lake and marts.

Paths are inside the lake's file system (``TVP_HDFS_URL`` + ``TVP_LAKE_ROOT``)::

    <root>/reference/channels/channels.csv              channel_id,channel_name,time_rating,viewers_rating,rank
    <root>/reference/users/users.csv                    user_id,user_name
    <root>/raw/tv_dataset/dt=YYYY-MM-DD/events.csv      history (simulator), one file per day
    <root>/raw/tv_stream/dt=YYYY-MM-DD/t<topic id>-p<P>-<from>-<to>.csv   live events landed by the Kafka sensor, one file
                                                                         per offset range of one incarnation of the topic
    <root>/raw/tv_stream/dt=YYYY-MM-DD/t<…>-p<P>-<from>-<to>.replayed.csv  events of that range's quarantine that a
                                                                         replay found good (``tv-platform quarantine``)
    <root>/quarantine/tv_stream/dt=YYYY-MM-DD/t<…>-p<P>-<from>-<to>.csv  bad messages with their reason
    <root>/deadletter/tv_stream/dt=YYYY-MM-DD/t<…>-p<P>-<from>-<to>….json  ranges whose landing failed every retry
    <root>/reference/inferred/t<…>-p<P>-<from>-<to>.csv   ids met in that range that the reference data lacks

Raw event CSV files have a header row: ``session_id,user_id,channel_id,timer,status``; ``timer`` is
``YYYY-MM-DD HH:MM:SS`` (local time of the operator, no zone) and ``dt`` is the date of ``timer``.
"""

from __future__ import annotations

from tv_platform.settings import Settings, get_settings

EVENT_COLUMNS = ["session_id", "user_id", "channel_id", "timer", "status"]
QUARANTINE_COLUMNS = ["topic", "partition", "offset", "reason", "payload"]
INFERRED_COLUMNS = ["dimension", "member_id", "first_seen"]  # dimension: "users" or "channels"
REPLAYED_SUFFIX = ".replayed.csv"
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


def inferred_dir(settings: "Settings | str | None" = None) -> str:
    return f"{root(settings)}/reference/inferred"


def deadletter_dir(source: str, settings: "Settings | str | None" = None) -> str:
    return f"{root(settings)}/deadletter/{source}"


def topic_tag(topic_id: str) -> str:
    """The short form of a Kafka topic id in file names: ``t`` + its first 16 hex digits (64 bits)."""
    return "t" + topic_id.replace("-", "")[:16]


def range_file_name(partition: int, start: int, end: int, topic_id: str = "") -> str:
    """File of one Kafka offset range [start, end) of one incarnation of the topic: the name is the topic id and the
    range, so a re-run rewrites the same file, and a topic deleted and created again (a new id, offsets from 0) can
    neither overwrite nor sit beside what was landed under the same bounds."""
    stem = f"p{partition}-{start:012d}-{end:012d}.csv"
    return f"{topic_tag(topic_id)}-{stem}" if topic_id else stem
