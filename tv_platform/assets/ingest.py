"""Ingest layer: where viewing events come from.

    channels, users            reference data (the seed's rating table; Faker ru_RU subscribers)  ─► lake/reference
    tv_dataset [daily]         the simulated history of a day                                     ─► lake/raw/tv_dataset/dt=…
    kafka/tv_events            the live topic (external: produced by `tv-platform produce`)
    tv_stream_snapshot [daily] offset ranges of the topic landed by the kafka sensor              ─► lake/raw/tv_stream/dt=…
                               bad messages with their reason                                     ─► lake/quarantine/tv_stream/dt=…
"""


import io
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from tv_platform import layout
from tv_platform.dates import today as local_today
from tv_platform.engines.hdfs import LakeResource, frame_to_csv_bytes
from tv_platform.engines.metadata import declare
from tv_platform.engines.kafka import KafkaResource
from tv_platform.partitions import daily
from tv_platform.quarantine import no_dead_letters
from tv_platform.location import settings as location_settings
from tv_platform.settings import get_settings
from tv_platform.streaming import validate

EVENT_DTYPES = {"session_id": "str", "user_id": "int64", "channel_id": "int32", "timer": "datetime64[s]", "status": "str"}

kafka_topic = dg.AssetSpec(
    key=dg.AssetKey(["kafka", "tv_events"]),
    description=f"Live viewing events in the Kafka topic `{location_settings.kafka_topic}` (JSON, key = session_id). "
    "Produced by `tv-platform produce`; consumed by the kafka sensor, which also observes its consumer lag.",
    group_name="ingest",
    kinds={"kafka"},
)


def stream_owns(instance: dg.DagsterInstance, day: str) -> bool:
    """Whether the live stream owns ``day``: ``tv_stream_snapshot`` has been materialized for it (a landing run, the
    other days a run's events touched, a quarantine replay). Such a day is never simulated (docs/operations.md)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("tv_stream_snapshot"), asset_partitions=[day]), limit=1)
    return bool(records.records)


class SimulationConfig(dg.Config):
    """Simulator parameters (defaults from TVP_SIM_USERS / TVP_SIM_SEED): a (users, seed, date) triple always gives the
    same day, so any past partition regenerates identically."""

    users: int = location_settings.sim_users
    seed: int = location_settings.sim_seed


@dg.asset(
    group_name="ingest",
    kinds={"python", "hdfs", "csv"},
    io_manager_key="hdfs_io_manager",
    metadata={
        "lake_path": "reference/channels",
        **declare({"channel_id": "int32", "channel_name": "str", "time_rating": "float64",
                   "viewers_rating": "float64", "rank": "int32"}),
    },
)
def channels() -> pd.DataFrame:
    """The 148 channels and their audience ratings (share of viewing time and of viewers, %) — the simulator's input."""
    from tv_platform.simulator.reference import load_channels

    frame = load_channels()
    return frame[["channel_id", "channel_name", "time_rating", "viewers_rating", "rank"]]


@dg.asset(
    group_name="ingest",
    kinds={"python", "hdfs", "csv"},
    io_manager_key="hdfs_io_manager",
    metadata={"lake_path": "reference/users", **declare({"user_id": "int64", "user_name": "str"})},
)
def users(config: SimulationConfig) -> pd.DataFrame:
    """Subscribers with Faker ru_RU names, deterministic for (seed, number of users)."""
    from tv_platform.simulator.reference import make_users

    return make_users(config.users, config.seed)


@dg.asset(
    group_name="ingest",
    kinds={"python", "hdfs", "csv"},
    partitions_def=daily,
    io_manager_key="hdfs_io_manager",
    deps=[channels, users],
    metadata={"lake_path": "raw/tv_dataset", **declare(EVENT_DTYPES, partition_expr="dt")},
)
def tv_dataset(context: dg.AssetExecutionContext, config: SimulationConfig) -> dg.Output[pd.DataFrame]:
    """The simulated viewing history of one day: enabled/disabled events of every session that starts that day
    (a session may end after midnight). One owner per day: a day the live stream has landed (``tv_stream_snapshot``
    materialized for it) is never simulated — the partition is written empty, so the lake of that day is built from
    what landed (a backfill over a stream day rebuilds it so)."""
    from tv_platform.simulator.model import EVENT_COLUMNS as COLUMNS, SimulationParams, simulate_day

    if stream_owns(context.instance, context.partition_key):
        context.log.info(f"{context.partition_key} belongs to the live stream: nothing simulated")
        empty = pd.DataFrame({c: pd.Series(dtype=EVENT_DTYPES[c]) for c in COLUMNS})
        return dg.Output(empty, metadata={"events": 0, "sessions": 0, "viewers": 0, "owner": "stream"})
    day = date.fromisoformat(context.partition_key)
    events = simulate_day(day, SimulationParams(users=config.users, seed=config.seed))
    enabled = events[events["status"] == "enabled"]
    return dg.Output(
        events,
        metadata={
            "events": len(events),
            "sessions": len(enabled),
            "viewers": int(enabled["user_id"].nunique()),
            "owner": "history",
        },
    )


# ---------------------------------------------------------------------------------------------------------------------
# the live stream
# ---------------------------------------------------------------------------------------------------------------------
class OffsetRange(dg.Config):
    partition: int
    start: int
    end: int


class StreamRangesConfig(dg.Config):
    """Exactly which records to land: offset ranges [start, end) of the topic (set by the kafka sensor), and the id of
    the topic's incarnation they were read from ("" = whatever the topic is now)."""

    topic: str = location_settings.kafka_topic
    topic_id: str = ""
    ranges: list[OffsetRange] = []


def _reference_ids(lake: LakeResource) -> tuple[set[int], set[int]]:
    """Known channel and user ids, from the reference data in the lake (materialize `channels` and `users` first)."""
    fs = lake.fs()
    ids = []
    for directory, name, column in ((layout.channels_dir(lake.lake_root), "channels.csv", "channel_id"),
                                    (layout.users_dir(lake.lake_root), "users.csv", "user_id")):
        path = f"{directory}/{name}"
        if not fs.exists(path):
            raise dg.Failure(f"reference data {path} is missing: materialize the `channels` and `users` assets first")
        ids.append(set(pd.read_csv(io.BytesIO(fs.read_bytes(path)), usecols=[column])[column].astype(int)))
    return ids[0], ids[1]


def quarantine_frame(topic: str, rejected) -> pd.DataFrame:
    """Rejected messages as quarantine rows (layout.QUARANTINE_COLUMNS): where they came from, why, the payload."""
    return pd.DataFrame(
        [[topic, x.message.partition, x.message.offset, x.reason,
          (x.message.value or b"").decode("utf-8", errors="replace")] for x in rejected],
        columns=layout.QUARANTINE_COLUMNS,
    )


def inferred_frame(result, day: str) -> pd.DataFrame:
    """The inferred dimension members a range brings (ids the reference data lacks), first seen on ``day``."""
    rows = [["users", i, day] for i in result.new_users] + [["channels", i, day] for i in result.new_channels]
    return pd.DataFrame(rows, columns=layout.INFERRED_COLUMNS)


def write_or_clear(fs, path: str, frame: pd.DataFrame) -> None:
    """``frame`` to ``path`` (CSV, written aside then renamed); no rows: no file (a stale one is deleted)."""
    if len(frame):
        fs.write_bytes(path, frame_to_csv_bytes(frame))
    elif fs.exists(path):
        fs.delete(path)


@dg.asset(
    group_name="ingest",
    kinds={"kafka", "hdfs", "csv"},
    partitions_def=daily,
    deps=[kafka_topic, channels, users],
    check_specs=[dg.AssetCheckSpec("events_conserved", asset="tv_stream_snapshot",
                                   description="events read = events landed + events quarantined, recounted from the files")],
)
def tv_stream_snapshot(context: dg.AssetExecutionContext, config: StreamRangesConfig, kafka: KafkaResource,
                       lake: LakeResource):
    """Live events landed from Kafka: each offset range the sensor hands over becomes one CSV file named by the topic's
    id and the range (re-running rewrites the same file — no duplicates, no gaps; a recreated topic gets new names),
    in the partition of the run's day and, for events dated another day, in that day's partition under the same name
    (that partition is recorded as materialized too, so automation follows it); bad messages go to quarantine with the raw payload, topic/partition/offset and the reason. Ids the
    reference data lacks do not stop an event: it lands, and the ids are kept as inferred members."""
    day = context.partition_key
    fs = lake.fs()
    channel_ids, user_ids = _reference_ids(lake)
    topic_id = kafka.topic_id(config.topic)
    if not topic_id:
        raise dg.Failure(f"topic {config.topic} does not exist (any more)")
    if config.topic_id and config.topic_id != topic_id:
        raise dg.Failure(f"topic {config.topic} was deleted and created again since these ranges were requested "
                         f"(id {config.topic_id}, now {topic_id}): their messages are gone")
    raw_root = layout.raw_dir("tv_stream", lake.lake_root)
    raw_dir = layout.partition_dir(raw_root, day)
    bad_dir = layout.partition_dir(layout.quarantine_dir("tv_stream", lake.lake_root), day)
    # every event lands in the partition of its own date (any day of the partitions: up to tomorrow, the clock-skew
    # tolerance); a range is cut for one day by record timestamps, but its payloads decide
    days = set(daily.get_partition_keys())
    horizon = (local_today() - timedelta(days=get_settings().late_horizon_days)).isoformat()
    read = landed = quarantined = 0
    files, names = [], []
    reasons: dict[str, int] = {}
    landed_by_day: dict[str, int] = {}
    new_users: set[int] = set()
    new_channels: set[int] = set()
    with kafka.reader(config.topic) as reader:  # one connection; the ranges of all partitions read side by side
        read_all = reader.read_ranges([(r.partition, r.start, r.end) for r in config.ranges])
    for r, messages in zip(config.ranges, read_all):
        result = validate(messages, day, channel_ids, user_ids, days=days)
        name = layout.range_file_name(r.partition, r.start, r.end, topic_id)
        names.append(name)
        by_day = result.by_day()
        by_day.setdefault(day, result.good.iloc[:0])  # the run's own day always gets the range's file
        for d, good in by_day.items():
            # the same name in every day it touches: unique per topic id and range, rewritten by a re-run
            good_path = f"{layout.partition_dir(raw_root, d)}/{name}"
            fs.write_bytes(good_path, frame_to_csv_bytes(good))
            files.append(good_path)
            landed_by_day[d] = landed_by_day.get(d, 0) + len(good)
        # a re-run that finds the range clean leaves no stale quarantine, and supersedes any replay of it
        write_or_clear(fs, f"{bad_dir}/{name}", quarantine_frame(config.topic, result.rejected))
        write_or_clear(fs, f"{raw_dir}/{name[:-4]}{layout.REPLAYED_SUFFIX}", result.good.iloc[:0])
        write_or_clear(fs, f"{layout.inferred_dir(lake.lake_root)}/{name}", inferred_frame(result, day))
        for x in result.rejected:
            kind = " ".join(x.reason.split(":")[0].split(" ")[0:2])
            reasons[kind] = reasons.get(kind, 0) + 1
        new_users.update(result.new_users)
        new_channels.update(result.new_channels)
        read += len(messages)
        landed += len(result.good)
        quarantined += len(result.rejected)
        context.log.info(f"{config.topic}[{r.partition}] {r.start}..{r.end}: {len(result.good)} landed "
                         f"({', '.join(f'{d}: {len(g)}' for d, g in by_day.items() if len(g))}), "
                         f"{len(result.rejected)} quarantined")

    other_days = {d: n for d, n in landed_by_day.items() if d != day and n}
    beyond = sorted(d for d in other_days if d < horizon)
    if beyond:
        context.log.warning(f"late events for {', '.join(beyond)}, older than the late-data horizon "
                            f"({get_settings().late_horizon_days} days): landed, but automation does not rebuild "
                            "those days — `tv-platform backfill --start D --end D` does (docs/operations.md)")
    # the check recounts from what is now in the lake, not from the counters above
    recount_landed = sum(_csv_rows(fs, p) for p in files)
    recount_quarantined = sum(_csv_rows(fs, f"{bad_dir}/{n}") for n in names)
    expected = sum(r.end - r.start for r in config.ranges)
    yield dg.MaterializeResult(
        metadata={
            "topic": config.topic,
            "topic_id": topic_id,
            "ranges": dg.MetadataValue.json([r.model_dump() for r in config.ranges]),
            "events_read": read,
            "events_landed": landed,
            "events_landed_by_day": dg.MetadataValue.json(landed_by_day),
            "late_days_beyond_horizon": dg.MetadataValue.json(beyond),
            "events_quarantined": quarantined,
            "quarantine_reasons": dg.MetadataValue.json(reasons),
            "inferred_users": len(new_users),
            "inferred_channels": len(new_channels),
            "files": dg.MetadataValue.json([lake.fs().uri(p) for p in files]),
        }
    )
    # the other days a range touched changed too: their partitions are recorded (after the run's own), so
    # automation follows them
    for d, n in sorted(other_days.items()):
        context.log_event(dg.AssetMaterialization(
            asset_key=context.asset_key, partition=d,
            description=f"events of {d} landed by the run for {day}",
            metadata={"events_landed": n, "landed_by_run_for": day, "beyond_late_horizon": d < horizon}))
    yield dg.AssetCheckResult(
        check_name="events_conserved",
        passed=read == recount_landed + recount_quarantined and read <= expected,
        metadata={"events_read": read, "landed_in_files": recount_landed,
                  "quarantined_in_files": recount_quarantined, "offsets_in_ranges": expected},
    )


def _csv_rows(fs, path: str) -> int:
    if not fs.exists(path):
        return 0
    data = fs.read_bytes(path)
    return max(data.count(b"\n") - 1, 0) if b'"' not in data else len(pd.read_csv(io.BytesIO(data)))


def stream_partition_summary(lake: LakeResource, day: str) -> dict:
    """Files and rows landed for one day (used by tests and the demo)."""
    fs = lake.fs()
    base = layout.partition_dir(layout.raw_dir("tv_stream", lake.lake_root), day)
    names = [n for n in fs.listdir(base) if n.endswith(".csv") and not n.startswith(".")]
    return {"files": names, "rows": sum(_csv_rows(fs, f"{base}/{n}") for n in names)}


assets = [kafka_topic, channels, users, tv_dataset, tv_stream_snapshot]
checks: list = [no_dead_letters]
