"""What the landing set aside, and bringing it back: quarantined messages and dead-lettered ranges.

- **Quarantine** (``<root>/quarantine/tv_stream/dt=D/<range>.csv``, written by ``tv_stream_snapshot``): messages that
  cannot be interpreted, with topic, partition, offset, reason and payload. ``replay_quarantine`` re-validates them
  (after a fix of the validation, say) and lands the good ones in ``raw/tv_stream/dt=D/<range>.replayed.csv`` — a
  pure function of the quarantine file, so a second replay rewrites the same bytes: each message lands at most once.
  The quarantine file is kept as it is (the record of what arrived); the messages still bad are those of the
  quarantine file missing from its ``.replayed.csv``. A re-run of the range supersedes both (it deletes the replayed
  file and rewrites the quarantine).
- **Dead letters** (``<root>/deadletter/tv_stream/dt=D/<ranges>.json``, written by the Kafka sensor): offset ranges
  whose landing run failed ``TVP_LANDING_MAX_ATTEMPTS`` times (or whose topic was recreated before they landed),
  with the reason and the last run. The ``no_dead_letters`` check of ``kafka/tv_events`` fails while any exists.
  ``replay_dead_letters`` runs the landing of each range again and deletes the letter once it landed.

``tv-platform quarantine list [--date D]`` and ``tv-platform quarantine replay --date D`` are the operator's handles;
a replay records a materialization of ``tv_stream_snapshot`` for D, so the lake and marts of D follow by automation.
"""

from __future__ import annotations

import io
import json
import time

import dagster as dg
import pandas as pd

from tv_platform import layout
from tv_platform.engines.hdfs import LakeResource
from tv_platform.streaming import Message, validate

SOURCE = "tv_stream"
CHECK = "no_dead_letters"
TOPIC_ASSET = dg.AssetKey(["kafka", "tv_events"])


# ---- dead letters --------------------------------------------------------------------------------------------------
def dead_letter(cursor: dict, ranges: list, day: str, attempts: int, reason: str, run_id: str) -> dict:
    return {"topic": cursor.get("topic", ""), "topic_id": cursor.get("topic_id", ""), "epoch": cursor.get("epoch", ""),
            "day": day, "ranges": [list(r) for r in ranges], "attempts": attempts, "reason": reason,
            "last_run": run_id, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _letter_name(letter: dict) -> str:
    stem = "+".join(f"p{p}-{s:012d}-{e:012d}" for p, s, e in letter["ranges"])
    return (f"{layout.topic_tag(letter['topic_id'])}-" if letter["topic_id"] else "") + stem + ".json"


def write_dead_letter(lake: LakeResource, letter: dict) -> str:
    path = f"{layout.partition_dir(layout.deadletter_dir(SOURCE, lake.lake_root), letter['day'])}/{_letter_name(letter)}"
    lake.fs().write_bytes(path, json.dumps(letter, indent=1).encode())
    return path


def _days(fs, base: str, day: str | None) -> list[str]:
    if day:
        return [day]
    return [n.split("=", 1)[1] for n in fs.listdir(base) if n.startswith("dt=")]


def dead_letters(lake: LakeResource, day: str | None = None) -> list[dict]:
    """Every dead letter (of ``day``), each with its ``path``."""
    fs = lake.fs()
    base = layout.deadletter_dir(SOURCE, lake.lake_root)
    out = []
    for d in _days(fs, base, day):
        folder = layout.partition_dir(base, d)
        for name in fs.listdir(folder):
            if name.endswith(".json") and not name.startswith("."):
                out.append(json.loads(fs.read_bytes(f"{folder}/{name}")) | {"path": f"{folder}/{name}"})
    return out


def dead_letter_evaluation(letters: list[dict]) -> dg.AssetCheckEvaluation:
    """The ``no_dead_letters`` check's result for these letters (the sensor records it as it changes)."""
    return dg.AssetCheckEvaluation(
        asset_key=TOPIC_ASSET, check_name=CHECK, passed=not letters,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"dead_letters": len(letters),
                  "offsets": sum(e - s for letter in letters for _, s, e in letter["ranges"]),
                  "letters": dg.MetadataValue.json([{k: v for k, v in x.items() if k != "path"} for x in letters[:20]]),
                  "replay": "tv-platform quarantine replay --date D"},
    )


@dg.asset_check(asset=TOPIC_ASSET, name=CHECK, blocking=False,
                description="no offset range of the topic is a dead letter (its landing failed every retry); "
                            "`tv-platform quarantine list` shows them, `… replay --date D` lands them")
def no_dead_letters(lake: LakeResource) -> dg.AssetCheckResult:
    e = dead_letter_evaluation(dead_letters(lake))
    return dg.AssetCheckResult(passed=e.passed, severity=e.severity, metadata=e.metadata)


def replay_dead_letters(lake: LakeResource, kafka, day: str, instance: dg.DagsterInstance | None = None) -> list[dict]:
    """Land every dead letter of ``day`` again (a run of ``tv_stream_snapshot`` with its ranges, in ``instance``);
    a letter is deleted once its ranges landed. Returns the letters with ``landed`` (True/False) and ``error``."""
    from tv_platform.assets.ingest import tv_stream_snapshot

    out = []
    for letter in dead_letters(lake, day):
        ranges = [{"partition": p, "start": s, "end": e} for p, s, e in letter["ranges"]]
        result = dg.materialize(
            [tv_stream_snapshot], partition_key=day, instance=instance, raise_on_error=False,
            resources={"kafka": kafka.with_topic(letter["topic"]) if letter["topic"] else kafka, "lake": lake},
            run_config={"ops": {"tv_stream_snapshot": {"config": {
                "topic": letter["topic"] or kafka.topic, "topic_id": letter["topic_id"], "ranges": ranges}}}},
            tags={"tv_platform/replay": "dead_letter"},
        )
        error = ""
        if result.success:
            lake.fs().delete(letter["path"])
        else:
            failures = [e for e in result.all_events if e.is_step_failure]
            error = failures[0].step_failure_data.error.message.strip() if failures else "the run failed"
        out.append(letter | {"landed": result.success, "error": error})
    return out


# ---- quarantine ----------------------------------------------------------------------------------------------------
def _quarantine_files(lake: LakeResource, day: str) -> list[str]:
    folder = layout.partition_dir(layout.quarantine_dir(SOURCE, lake.lake_root), day)
    return [f"{folder}/{n}" for n in lake.fs().listdir(folder) if n.endswith(".csv") and not n.startswith(".")]


def _read(fs, path: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(fs.read_bytes(path)), dtype={"payload": str, "reason": str, "topic": str},
                       keep_default_na=False)


def _revalidate(frame: pd.DataFrame, day: str, reference: tuple | None):
    """The quarantine rows as messages, validated again (the payload as stored: UTF-8 text)."""
    messages = [Message(int(p), int(o), str(v).encode("utf-8"))
                for p, o, v in zip(frame["partition"], frame["offset"], frame["payload"])]
    channel_ids, user_ids = reference or (None, None)
    return validate(messages, day, channel_ids, user_ids)


def _replayed_path(lake: LakeResource, day: str, quarantine_path: str) -> str:
    name = quarantine_path.rsplit("/", 1)[1]
    return f"{layout.partition_dir(layout.raw_dir(SOURCE, lake.lake_root), day)}/{name[:-4]}{layout.REPLAYED_SUFFIX}"


def quarantine_summary(lake: LakeResource, day: str) -> dict:
    """Quarantine of one day: messages quarantined, already replayed (landed by a replay), still quarantined, and
    the reasons of those still quarantined, as validation gives them now."""
    from tv_platform.assets.ingest import _csv_rows

    fs = lake.fs()
    total = replayed = 0
    reasons: dict[str, int] = {}
    for path in _quarantine_files(lake, day):
        frame = _read(fs, path)
        total += len(frame)
        replayed += _csv_rows(fs, _replayed_path(lake, day, path))
        for x in _revalidate(frame, day, None).rejected:
            reasons[x.reason] = reasons.get(x.reason, 0) + 1
    return {"day": day, "quarantined": total, "replayed": replayed, "still_quarantined": total - replayed,
            "reasons": reasons}


def quarantine_days(lake: LakeResource) -> list[str]:
    fs = lake.fs()
    return sorted(set(_days(fs, layout.quarantine_dir(SOURCE, lake.lake_root), None))
                  | {x["day"] for x in dead_letters(lake)})


def replay_quarantine(lake: LakeResource, day: str) -> dict:
    """Re-validate the quarantine of ``day`` and land the good messages (``<range>.replayed.csv`` beside the range's
    file, inferred members as the landing records them). Idempotent: the same quarantine gives the same files."""
    from tv_platform.assets.ingest import _reference_ids, inferred_frame, write_or_clear

    fs = lake.fs()
    reference = _reference_ids(lake)
    landed = still = 0
    for path in _quarantine_files(lake, day):
        result = _revalidate(_read(fs, path), day, reference)
        write_or_clear(fs, _replayed_path(lake, day, path), result.good)
        name = path.rsplit("/", 1)[1]
        write_or_clear(fs, f"{layout.inferred_dir(lake.lake_root)}/{name[:-4]}{layout.REPLAYED_SUFFIX}",
                       inferred_frame(result, day))
        landed += len(result.good)
        still += len(result.rejected)
    return {"day": day, "replayed": landed, "still_quarantined": still}


def record_replay(instance: dg.DagsterInstance, lake: LakeResource, day: str, summary: dict) -> None:
    """Tell Dagster: ``tv_stream_snapshot`` of ``day`` changed (automation carries it through the lake and marts),
    and the dead-letter check's state now."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="tv_stream_snapshot", partition=day,
        metadata={"replayed_from_quarantine": summary.get("replayed", 0),
                  "dead_letters_landed": summary.get("dead_letters_landed", 0)},
        description="tv-platform quarantine replay"))
    instance.report_runless_asset_event(dead_letter_evaluation(dead_letters(lake)))
