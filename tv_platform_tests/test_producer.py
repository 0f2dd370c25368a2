"""The producer: JSON and partitions computed column-wise (a piece of the frame encoded ahead while the previous one is sent), then librdkafka (idempotent, acks=all, lz4).

Unit tests check the encoding against the reference implementations (``json.dumps``, kafka-python's murmur2
partitioner); the broker tests read back what was sent, SIGKILL a `produce` half way and run it again, and measure
`--rate` from the topic's end offsets."""

import json
import random
from datetime import date

import pandas as pd
import pyarrow as pa
import pytest
from kafka.partitioner.default import murmur2

from tv_platform.dates import timer_ms
from tv_platform.engines.kafka import encode_event_arrays, event_to_json, murmur2_partitions, publish_frame
from tv_platform.resources import kafka_resource
from tv_platform.simulator.live import live_frame
from tv_platform.simulator.model import SimulationParams


def test_murmur2_partitions_agree_with_kafkas_default_partitioner():
    rng = random.Random(3)
    keys = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    keys += [f"{rng.getrandbits(128):032x}".encode() for _ in range(4000)]  # session ids: the common case
    for partitions in (1, 3, 7, 12):
        want = [(murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]
        assert murmur2_partitions(keys, partitions).tolist() == want
        # from an Arrow array's buffers (what the producer passes), also a slice of one
        arrow = pa.array([b"x"] + keys, type=pa.binary())[1:]
        assert murmur2_partitions(arrow, partitions).tolist() == want
        sids = pa.array([b"x" * 32] + keys[4000:], type=pa.binary())[1:]  # one length: read from the buffer
        assert murmur2_partitions(sids, partitions).tolist() == want[4000:]
        assert murmur2_partitions(pa.array([b"", b""]), partitions).tolist() == [(murmur2(b"") & 0x7FFFFFFF) %
                                                                                 partitions] * 2


def test_encoded_events_are_the_json_of_each_event():
    frame = live_frame(date(2023, 10, 10), SimulationParams(users=5_000, seed=2), count=3_000)
    keys, values = (a.to_pylist() for a in encode_event_arrays(frame))
    assert values == [json.dumps(event_to_json(e), ensure_ascii=False, separators=(",", ":")).encode()
                      for e in frame.to_dict("records")]
    assert keys == [s.encode() for s in frame["session_id"]]


def test_a_frame_put_together_with_concat_encodes_as_one():
    """Days of events joined with ``pd.concat`` (their text columns are chunked Arrow arrays): whole arrays come out,
    each event's JSON, and its key's partition — as for one frame."""
    frames = [live_frame(date(2023, 10, 1 + d), SimulationParams(users=1_000, seed=3), count=2_000) for d in range(3)]
    joined = pd.concat(frames, ignore_index=True)
    keys, values = encode_event_arrays(joined)
    assert isinstance(keys, pa.Array) and isinstance(values, pa.Array) and len(values) == len(joined) > 3_000
    assert values.to_pylist() == [v for f in frames for v in encode_event_arrays(f)[1].to_pylist()]
    want = [(murmur2(k) & 0x7FFFFFFF) % 3 for k in keys.to_pylist()]
    assert murmur2_partitions(keys, 3).tolist() == want
    assert murmur2_partitions(pa.chunked_array([keys[:10], keys[10:]]), 3).tolist() == want


def test_strings_that_json_must_escape_are_escaped():
    frame = pd.DataFrame([{"session_id": 'a"b\\c', "user_id": 1, "channel_id": 2, "timer": "2023-01-01 00:00:00",
                           "status": "enab\x01"}, {"session_id": "ok", "user_id": -5, "channel_id": 0,
                                                   "timer": "2023-01-01 00:00:01", "status": "disabled"}])
    values = encode_event_arrays(frame)[1].to_pylist()
    assert [json.loads(v) for v in values] == [event_to_json(e) for e in frame.to_dict("records")]
    # each text column alone (the byte scan looks at each), a timer given as text, and a frame sliced from another
    for column, bad in (("session_id", "s\n1"), ("status", 'st"op'), ("timer", '2023-01-01 00:00:0"')):
        odd = pd.concat([frame.iloc[1:]] * 3, ignore_index=True)
        odd.loc[1, column] = bad
        for part in (odd, odd.iloc[1:], odd.iloc[2:]):
            values = encode_event_arrays(part)[1].to_pylist()
            assert [json.loads(v) for v in values] == [event_to_json(e) for e in part.to_dict("records")], column


@pytest.mark.services
def test_published_events_keep_their_keys_partition_and_order(stack, unique):
    kafka = kafka_resource(stack).with_topic(f"producer_{unique}")
    kafka.ensure_topic(partitions=4)
    frame = live_frame(date(2023, 10, 10), SimulationParams(users=30_000, seed=4), count=45_000)
    assert publish_frame(kafka, frame, progress=False, chunk=10_000) == 45_000

    _, end = kafka.offsets()
    assert sum(end.values()) == 45_000
    keys = encode_event_arrays(frame)[0].to_pylist()
    expected = murmur2_partitions(keys, 4)
    for partition, n in end.items():
        records = kafka.read_range(partition, 0, n)
        events = [json.loads(r.value) for r in records]
        mine = frame[expected == partition]
        # exactly this partition's events, in the frame's (timer) order, keys intact
        assert [e["session_id"] for e in events] == mine["session_id"].tolist()
        assert [r.key.decode() for r in records] == mine["session_id"].tolist()
        timers = [e["timer"] for e in events]
        assert timers == sorted(timers)
        # the record timestamp is the event's timer
        assert records.timestamps.tolist() == timer_ms(mine["timer"]).tolist()


def _produce(env, *args):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tv_platform.cli", "produce", "--no-progress", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _topic_events(kafka) -> list:
    _, end = kafka.offsets()
    out = []
    for partition, n in end.items():
        out += kafka.read_range(partition, 0, n).values.to_pylist()
    return out


@pytest.mark.services
def test_a_produce_killed_half_way_and_run_again_delivers_every_event_once(stack, unique):
    import os
    import signal
    import time
    from collections import Counter

    kafka = kafka_resource(stack).with_topic(f"resume_{unique}")
    kafka.ensure_topic(partitions=3)
    args = ["--topic", kafka.topic, "--date", "2023-10-12", "--users", "30000", "--seed", "5", "--count", "200000"]
    env = dict(os.environ)
    first = _produce(env, *args, "--rate", "40000")
    deadline = time.monotonic() + 60
    while sum(kafka.offsets()[1].values()) < 40_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = sum(kafka.offsets()[1].values())
    assert 40_000 <= before < 200_000, before  # really killed half way
    second = _produce(env, *args)
    out = second.communicate(timeout=120)[0]
    assert second.returncode == 0, out
    frame = live_frame(date(2023, 10, 12), SimulationParams(users=30_000, seed=5), count=200_000)
    expected = Counter(encode_event_arrays(frame)[1].to_pylist())
    got = Counter(_topic_events(kafka))
    assert got == expected  # every event of the frame, each exactly once
    # a third run finds nothing left to send
    third = _produce(env, *args)
    third.communicate(timeout=120)
    assert third.returncode == 0 and Counter(_topic_events(kafka)) == expected


@pytest.mark.services
def test_rate_is_honoured_within_ten_percent_over_ten_seconds(stack, unique):
    import os
    import time

    kafka = kafka_resource(stack).with_topic(f"rate_{unique}")
    kafka.ensure_topic(partitions=3)
    rate = 20_000
    proc = _produce(dict(os.environ), "--topic", kafka.topic, "--date", "2023-10-13", "--users", "200000",
                    "--rate", str(rate), "--duration", "14")
    deadline = time.monotonic() + 60
    while sum(kafka.offsets()[1].values()) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # past the start
    t0, n0 = time.monotonic(), sum(kafka.offsets()[1].values())
    time.sleep(10.0)
    t1, n1 = time.monotonic(), sum(kafka.offsets()[1].values())
    proc.communicate(timeout=60)
    measured = (n1 - n0) / (t1 - t0)
    assert abs(measured - rate) <= 0.10 * rate, measured


@pytest.mark.services
def test_speed_paces_a_short_day_against_the_broker(stack, unique, tmp_path):
    """``produce --speed 720`` replays two hours of a day in ~10 s: every record carries its event's timestamp, and
    the events arrive spread as their timers are (an event 60 min into the day ~5 s after the first; loose bounds)."""
    import os
    import time

    kafka = kafka_resource(stack).with_topic(f"speed_{unique}")
    kafka.ensure_topic(partitions=1)
    speed = 720
    rows = []
    for k in range(13):  # one session every 10 minutes, 00:00 .. 02:00, each 5 minutes long
        start = pd.Timestamp("2023-10-14") + pd.Timedelta(minutes=10 * k)
        sid = f"{k + 1:032x}"
        rows.append((sid, k + 1, 1, start, "enabled"))
        rows.append((sid, k + 1, 1, start + pd.Timedelta(minutes=5), "disabled"))
    frame = pd.DataFrame(rows, columns=["session_id", "user_id", "channel_id", "timer", "status"])
    frame = frame.sort_values("timer", kind="stable")
    frame["timer"] = frame["timer"].dt.strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "day.csv"
    frame.to_csv(path, header=False, index=False)

    proc = _produce(dict(os.environ), "--topic", kafka.topic, "--replay", str(path), "--speed", str(speed))
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        seen.append((time.monotonic(), sum(kafka.offsets()[1].values())))
        time.sleep(0.05)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    seen.append((time.monotonic(), sum(kafka.offsets()[1].values())))
    n = len(frame)
    assert seen[-1][1] == n

    def arrived(k: int) -> float:  # when the (k+1)-th event was in the topic
        return next(t for t, c in seen if c >= k + 1)

    first = arrived(0)
    # event 12 is s06's enabled at 01:00 (60 min = 5 s at 720×); the last, s12's disabled at 02:05, ~10.4 s
    mid, last = arrived(12) - first, arrived(n - 1) - first
    assert 3.5 <= mid <= 7.5, (mid, last)
    assert 8.5 <= last <= 14.0, (mid, last)
    records = kafka.read_range(0, 0, n)
    assert records.timestamps.tolist() == timer_ms(frame["timer"]).tolist()  # the events' own timestamps


def test_the_escaping_scan_sees_every_byte_json_must_escape():
    from tv_platform.engines.kafka import _needs_escaping

    assert not _needs_escaping(pa.array([], pa.string())) and not _needs_escaping(pa.array(["", ""], pa.string()))
    assert not _needs_escaping(pa.array(["plain text", "2023-01-01 00:00:00"], pa.string()))
    for bad in ('a"b', "a\\b", "a\nb", "\x00", "\x1f"):
        assert _needs_escaping(pa.array(["ok", bad], pa.string())), repr(bad)
        assert not _needs_escaping(pa.array(["ok", bad, "fine"], pa.string())[2:]), repr(bad)  # a slice sees its own


def test_a_bad_frame_is_refused_whole_before_anything_is_sent():
    """The producer encodes a frame piece by piece while it sends: what would stop a piece is found for the whole
    frame first — a missing column, a missing value in the last row, an id that is not a number."""
    from tv_platform.engines.kafka import check_event_frame

    good = pd.DataFrame([{"session_id": f"s{i}", "user_id": i, "channel_id": 2, "timer": "2023-01-01 00:00:00",
                          "status": "enabled"} for i in range(5)])
    check_event_frame(good)
    with pytest.raises(ValueError, match="lacks columns"):
        check_event_frame(good.drop(columns=["status"]))
    last_missing = good.astype({"user_id": "float64"})
    last_missing.loc[4, "user_id"] = None
    with pytest.raises(ValueError, match="1 missing user_id"):
        check_event_frame(last_missing)
    with pytest.raises(ValueError, match="1 missing session_id"):  # an object column's None, not the text "None"
        check_event_frame(good.astype({"session_id": object}).assign(session_id=["a", "b", None, "d", "e"]))
    with pytest.raises(ValueError):
        check_event_frame(good.astype({"channel_id": str}).assign(channel_id=["1", "2", "3", "4", "x"]))


def test_pieces_encoded_ahead_come_in_order_and_an_error_where_it_happened():
    import threading

    from tv_platform.engines.kafka import _one_ahead

    assert list(_one_ahead([lambda i=i: i * i for i in range(7)])) == [0, 1, 4, 9, 16, 25, 36]

    def broken():
        raise RuntimeError("piece 2")

    got = []
    with pytest.raises(RuntimeError, match="piece 2"):
        for item in _one_ahead([lambda: 0, lambda: 1, broken, lambda: 3]):
            got.append(item)
    assert got == [0, 1]
    ahead = _one_ahead([lambda i=i: i for i in range(100)])  # left half-way: close stops the thread
    assert next(ahead) == 0
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("tv_platform-encoder")]
