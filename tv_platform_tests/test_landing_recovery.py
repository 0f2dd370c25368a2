"""Landing loses nothing and heals itself (#14), on the real broker and HDFS.

Every case produces a known set of events and counts, from the files in the lake (not from the platform's metadata):
produced = landed + quarantined + dead-lettered. The SIGKILL of a landing run under a real daemon is in
test_landing_sigkill.py; the lake and marts of inferred members in test_landing_inferred.py."""

import io
import json
import os
import subprocess
import sys
import time
import uuid

import dagster as dg
import pandas as pd
import pytest

from tv_platform import layout, quarantine
from tv_platform.assets import ingest
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
from tv_platform.sensors import kafka_events_sensor
from tv_platform.settings import get_settings
from tv_platform_tests.test_landing_validation import POISON

pytestmark = pytest.mark.services

DAY = "2023-09-23"  # the day of the poison messages of test_landing_validation
USERS = 1_000


def _lake(stack, name: str) -> LakeResource:
    return LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": f"/tests/landing_{name}"})


@pytest.fixture(scope="module")
def lake_res(stack):
    """The stack's HDFS under a lake root of this module, with channels and USERS subscribers in it."""
    res = _lake(stack, uuid.uuid4().hex[:8])
    io_manager = HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": res.lake_root})
    assert dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": io_manager},
                          run_config={"ops": {"users": {"config": {"users": USERS, "seed": 3}}}}).success
    yield res
    res.fs().delete(res.lake_root)


@pytest.fixture
def settings_env(monkeypatch):
    """Set TVP_* variables for this test (the settings are read again)."""
    def set_env(**values):
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))
        get_settings.cache_clear()
    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def event(i: int, tag: str, **overrides) -> dict:
    """Event i of a test: a session id naming the test (so counts never see another test's events)."""
    sid = uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{i // 2}").hex
    return {"session_id": sid, "user_id": 1 + i % USERS, "channel_id": 1 + i % 148,
            "timer": f"{DAY} {10 + (i % 2) * 2:02d}:{i % 60:02d}:00",
            "status": "enabled" if i % 2 == 0 else "disabled"} | overrides


def send(kafka, values: list[bytes], partition: int = 0) -> None:
    """Raw values to one partition, every record stamped with noon of DAY (so the sensor dates the range DAY)."""
    from tv_platform.dates import day_start_ms

    producer = kafka.producer()
    stamp = day_start_ms(DAY) + 12 * 3600 * 1000
    for v in values:
        producer.produce(kafka.topic, v, "k", partition=partition, timestamp=stamp)
    assert producer.flush(60) == 0


def topic(stack, name: str, partitions: int = 1):
    kafka = kafka_resource(stack).with_topic(name)
    kafka.ensure_topic(partitions=partitions)
    return kafka


def tick(kafka, lake, cursor=None, instance=None):
    ctx = dg.build_sensor_context(cursor=cursor, instance=instance or dg.DagsterInstance.ephemeral(),
                                  resources={"kafka": kafka, "lake": lake})
    return kafka_events_sensor(ctx)


def land(kafka, lake, rr, instance=None):
    return dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                          resources={"kafka": kafka, "lake": lake}, instance=instance,
                          tags=rr.tags | {"dagster/run_key": rr.run_key}, raise_on_error=False)


def read_dir(lake, base: str, day: str = DAY, suffix: str = ".csv") -> dict[str, pd.DataFrame]:
    fs = lake.fs()
    folder = layout.partition_dir(base, day)
    return {n: pd.read_csv(io.BytesIO(fs.read_bytes(f"{folder}/{n}")), keep_default_na=False)
            for n in fs.listdir(folder) if n.endswith(suffix) and not n.startswith(".")}


def landed(lake, sessions: set[str]) -> pd.DataFrame:
    frames = [f for f in read_dir(lake, layout.raw_dir("tv_stream", lake.lake_root)).values() if len(f)]
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=layout.EVENT_COLUMNS)
    return events[events["session_id"].isin(sessions)]


def quarantined(lake, topic_name: str) -> pd.DataFrame:
    frames = list(read_dir(lake, layout.quarantine_dir("tv_stream", lake.lake_root)).values())
    q = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=layout.QUARANTINE_COLUMNS)
    return q[q["topic"] == topic_name]


def cli(lake, kafka, tmp_path, *args) -> subprocess.CompletedProcess:
    """``tv-platform quarantine …`` as an operator runs it, on this test's lake root and topic, with a Dagster
    instance of its own."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, TVP_LAKE_ROOT=lake.lake_root, TVP_KAFKA_TOPIC=kafka.topic, DAGSTER_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "tv_platform.cli", "quarantine", *args], env=env,
                          capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------------------------------------------------------------
def test_poison_messages_among_1000_good_ones_are_quarantined_and_the_rest_lands(stack, lake_res, unique):
    kafka = topic(stack, f"poison_{unique}")
    tag = f"poison_{unique}"
    good = [json.dumps(event(i, tag)).encode() for i in range(1_000)]
    poison = [p for p, _ in POISON.values()]
    send(kafka, good[:500] + poison + good[500:])

    result = tick(kafka, lake_res)
    assert [rr.partition_key for rr in result.run_requests] == [DAY]
    (rr,) = result.run_requests
    res = land(kafka, lake_res, rr)
    assert res.success  # one run, first time: nothing stalls
    sessions = {event(i, tag)["session_id"] for i in range(1_000)}
    got = landed(lake_res, sessions)
    q = quarantined(lake_res, kafka.topic)
    produced = 1_000 + len(poison)
    assert len(got) == 1_000 and len(got.drop_duplicates()) == 1_000
    assert len(q) == len(poison) and sorted(q["offset"]) == list(range(500, 500 + len(poison)))
    assert len(got) + len(q) == produced
    for (_, reason), row_reason in zip(POISON.values(), q.sort_values("offset")["reason"]):
        assert reason in row_reason
    assert all(c.passed for c in res.get_asset_check_evaluations())


def test_unknown_users_and_channels_land_as_inferred_members(stack, lake_res, unique):
    kafka = topic(stack, f"inferred_{unique}")
    tag = f"inferred_{unique}"
    events = [event(i, tag) for i in range(200)]
    for i in range(0, 40, 2):  # whole sessions of subscribers and a channel the reference data lacks
        for e in events[i:i + 2]:
            e["user_id"] = 50_000 + i
        if i % 4 == 0:
            for e in events[i:i + 2]:
                e["channel_id"] = 990
    send(kafka, [json.dumps(e).encode() for e in events])
    (rr,) = tick(kafka, lake_res).run_requests
    res = land(kafka, lake_res, rr)
    assert res.success
    got = landed(lake_res, {e["session_id"] for e in events})
    assert len(got) == 200 and not len(quarantined(lake_res, kafka.topic))
    members = _inferred(lake_res, kafka)
    assert sorted(members.loc[members.dimension == "users", "member_id"]) == list(range(50_000, 50_040, 2))
    assert members.loc[members.dimension == "channels", "member_id"].tolist() == [990]
    assert set(members["first_seen"]) == {DAY}
    meta = res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata
    assert (meta["inferred_users"].value, meta["inferred_channels"].value) == (20, 1)


def _inferred(lake, kafka) -> pd.DataFrame:
    fs = lake.fs()
    folder = layout.inferred_dir(lake.lake_root)
    tag = layout.topic_tag(kafka.topic_id())
    frames = [pd.read_csv(io.BytesIO(fs.read_bytes(f"{folder}/{n}"))) for n in fs.listdir(folder) if n.startswith(tag)]
    return pd.concat(frames, ignore_index=True)


def test_a_range_that_always_fails_backs_off_becomes_a_dead_letter_and_is_replayed(stack, lake_res, unique, tmp_path,
                                                                                 settings_env):
    """The landing of a lake without reference data fails every time (a real failure of a real run). Retries wait
    (backoff), stop after TVP_LANDING_MAX_ATTEMPTS, and the range becomes a dead letter: the check fails, the CLI lists
    it. Once the cause is fixed (the reference data loaded), ``quarantine replay`` lands it — once."""
    settings_env(TVP_LANDING_MAX_ATTEMPTS=3, TVP_LANDING_RETRY_BACKOFF=2)
    broken = _lake(stack, f"broken_{unique}")
    try:
        kafka = topic(stack, f"dead_{unique}")
        tag = f"dead_{unique}"
        events = [event(i, tag) for i in range(300)]
        send(kafka, [json.dumps(e).encode() for e in events])
        instance = dg.DagsterInstance.ephemeral()
        result = tick(kafka, broken, instance=instance)
        (rr,) = result.run_requests
        assert not land(kafka, broken, rr, instance).success
        attempts, cursor, waited = 1, result.cursor, False
        while True:
            result = tick(kafka, broken, cursor, instance)
            cursor = result.cursor
            state = json.loads(cursor)
            if not state["pending"]:
                break
            if not result.run_requests:  # backing off: the failed range waits, not forgotten
                (entry,) = state["pending"]
                assert entry[3] > time.time() - 1
                waited = True
                time.sleep(1)
                continue
            (rr,) = result.run_requests
            assert rr.run_key.endswith(f"#retry{attempts}")
            assert not land(kafka, broken, rr, instance).success
            attempts += 1
        assert attempts == 3 and waited
        check = next(e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation))
        assert check.check_name == "no_dead_letters" and not check.passed
        assert check.metadata["offsets"].value == 300
        (letter,) = quarantine.dead_letters(broken, DAY)
        assert letter["ranges"] == [[0, 0, 300]] and letter["attempts"] == 3
        assert "reference data" in letter["reason"]
        assert landed(broken, {e["session_id"] for e in events}).empty
        # produced = landed + quarantined + dead-lettered
        assert 300 == 0 + 0 + sum(e - s for _, s, e in letter["ranges"])

        listed = cli(broken, kafka, tmp_path, "list")
        assert listed.returncode == 0, listed.stderr
        assert f"dead letter {kafka.topic} 0:0-300 after 3 attempts" in listed.stdout

        # the fix: the reference data; then the replay lands the range, and a second replay adds nothing
        io_manager = HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": broken.lake_root})
        assert dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": io_manager},
                              run_config={"ops": {"users": {"config": {"users": USERS, "seed": 3}}}}).success
        for _ in range(2):
            replayed = cli(broken, kafka, tmp_path, "replay", "--date", DAY)
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            got = landed(broken, {e["session_id"] for e in events})
            assert len(got) == 300 and len(got.drop_duplicates()) == 300
        assert "1 of 1 dead letters landed" not in replayed.stdout  # the second found none left
        assert quarantine.dead_letters(broken) == []
        with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as inst:
            evaluation = inst.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(quarantine.TOPIC_ASSET, quarantine.CHECK)])
            assert evaluation[dg.AssetCheckKey(quarantine.TOPIC_ASSET, quarantine.CHECK)].status.value == "SUCCEEDED"
            mats = inst.fetch_materializations(dg.AssetKey("tv_stream_snapshot"), limit=10).records
            assert {m.partition_key for m in mats} == {DAY}
    finally:
        broken.fs().delete(broken.lake_root)


def test_a_topic_deleted_and_recreated_neither_overwrites_nor_duplicates(stack, lake_res, unique):
    kafka = topic(stack, f"recreated_{unique}")
    tag = f"recreated_{unique}"
    first = [event(i, f"{tag}/1") for i in range(100)]
    send(kafka, [json.dumps(e).encode() for e in first])
    instance = dg.DagsterInstance.ephemeral()
    result = tick(kafka, lake_res, instance=instance)
    (rr,) = result.run_requests
    assert land(kafka, lake_res, rr, instance).success
    old_id = kafka.topic_id()
    raw = layout.partition_dir(layout.raw_dir("tv_stream", lake_res.lake_root), DAY)
    old_name = layout.range_file_name(0, 0, 100, old_id)
    old_bytes = lake_res.fs().read_bytes(f"{raw}/{old_name}")
    # 30 more, requested but not landed before the topic goes: their run can no longer land them
    pending = [event(100 + i, f"{tag}/1") for i in range(30)]
    send(kafka, [json.dumps(e).encode() for e in pending])
    result = tick(kafka, lake_res, result.cursor, instance)
    (stale_rr,) = result.run_requests

    admin = kafka.admin()
    admin.delete_topics([kafka.topic])
    admin.close()
    deadline = time.monotonic() + 60
    while kafka.topic_id() and time.monotonic() < deadline:
        time.sleep(0.5)
    kafka.ensure_topic(partitions=1)
    while not kafka.topic_id():
        time.sleep(0.5)
    new_id = kafka.topic_id()
    assert new_id != old_id
    # the new incarnation gets more messages than the old offsets: only the topic id tells them apart
    second = [event(i, f"{tag}/2") for i in range(200)]
    send(kafka, [json.dumps(e).encode() for e in second])

    stale = land(kafka, lake_res, stale_rr, instance)
    assert not stale.success  # the old range's messages are gone: no run lands the new topic's under its name
    result = tick(kafka, lake_res, result.cursor, instance)
    cursor = json.loads(result.cursor)
    assert cursor["topic_id"] == new_id
    (rr,) = result.run_requests
    assert rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"] == [{"partition": 0, "start": 0, "end": 200}]
    assert land(kafka, lake_res, rr, instance).success

    names = sorted(read_dir(lake_res, layout.raw_dir("tv_stream", lake_res.lake_root)))
    assert old_name in names and layout.range_file_name(0, 0, 200, new_id) in names
    assert lake_res.fs().read_bytes(f"{raw}/{old_name}") == old_bytes  # not overwritten
    got = landed(lake_res, {e["session_id"] for e in first + pending + second})
    assert len(got) == 300 and len(got.drop_duplicates()) == 300  # no duplicates
    (letter,) = [x for x in quarantine.dead_letters(lake_res, DAY) if x["topic"] == kafka.topic]
    assert letter["ranges"] == [[0, 100, 130]] and "created again" in letter["reason"]
    # produced (330) = landed (300) + quarantined (0) + dead-lettered (30: the broker lost them with the topic)
    assert 330 == len(got) + len(quarantined(lake_res, kafka.topic)) + 30
    lake_res.fs().delete(letter["path"])


def test_quarantine_replayed_twice_lands_each_message_once(stack, lake_res, unique, tmp_path):
    """A day whose quarantine holds events an older version rejected (unknown subscribers, as it did before #14),
    beside messages no validation can read. The replay lands the good ones; a second replay adds nothing."""
    kafka = topic(stack, f"replay_{unique}")
    tag = f"replay_{unique}"
    events = [event(i, tag) for i in range(400)]
    for e in events[200:]:
        e["user_id"] = 90_000 + events.index(e) // 2
    poison = [POISON["deep nesting"][0], POISON["invalid UTF-8"][0], b"{not json"]
    send(kafka, [json.dumps(e).encode() for e in events[:200]] + poison)
    send(kafka, [json.dumps(e).encode() for e in events[200:]])  # offsets 203..403
    (rr,) = tick(kafka, lake_res).run_requests
    assert land(kafka, lake_res, rr).success
    # what the version before #14 left of 203..403: no event landed, every one quarantined as an unknown user
    tid = kafka.topic_id()
    raw = layout.partition_dir(layout.raw_dir("tv_stream", lake_res.lake_root), DAY)
    bad = layout.partition_dir(layout.quarantine_dir("tv_stream", lake_res.lake_root), DAY)
    fs = lake_res.fs()
    name = layout.range_file_name(0, 0, 403, tid)
    frame = pd.read_csv(io.BytesIO(fs.read_bytes(f"{raw}/{name}")))
    old_q = pd.read_csv(io.BytesIO(fs.read_bytes(f"{bad}/{name}")), keep_default_na=False)
    fs.write_bytes(f"{raw}/{name}", frame.iloc[:200].to_csv(index=False).encode())
    messages = kafka.read_range(0, 203, 403)
    older = pd.DataFrame([[kafka.topic, 0, m.offset, f"unknown user_id {json.loads(m.value)['user_id']}",
                           m.value.decode()] for m in messages], columns=layout.QUARANTINE_COLUMNS)
    fs.write_bytes(f"{bad}/{name}", pd.concat([old_q, older]).to_csv(index=False).encode())
    sessions = {e["session_id"] for e in events}
    assert len(landed(lake_res, sessions)) == 200 and len(quarantined(lake_res, kafka.topic)) == 203

    listed = cli(lake_res, kafka, tmp_path, "list", "--date", DAY)
    assert listed.returncode == 0, listed.stderr
    for _ in range(2):
        out = cli(lake_res, kafka, tmp_path, "replay", "--date", DAY)
        assert out.returncode == 0, out.stdout + out.stderr
        got = landed(lake_res, sessions)
        assert len(got) == 400 and len(got.drop_duplicates()) == 400
    summary = quarantine.quarantine_summary(lake_res, DAY)
    ours = quarantined(lake_res, kafka.topic)
    assert len(ours) == 203  # the quarantine keeps the record of what arrived
    # produced (403) = landed (400) + still quarantined (3)
    assert 403 == len(got) + (len(ours) - 200)
    # the day's summary also holds the other tests' poison of DAY (one lake root for the module): ours are among it
    # (the invalid UTF-8 one is kept as text with replacement characters, so it reads back as malformed JSON)
    assert summary["still_quarantined"] >= 3 and all(
        any(k in r for r in summary["reasons"]) for k in ("nested too deeply", "malformed JSON"))
    after = cli(lake_res, kafka, tmp_path, "list", "--date", DAY)
    assert "still quarantined" in after.stdout and "nested too deeply" in after.stdout
    # a re-run of the range supersedes the replay: everything good in the range file, nothing twice
    assert land(kafka, lake_res, rr).success
    got = landed(lake_res, sessions)
    assert len(got) == 400 and len(got.drop_duplicates()) == 400
    assert len(quarantined(lake_res, kafka.topic)) == 3
