"""Validation is total (#14): no payload can make the landing of its range raise — deep nesting, a huge payload,
invalid UTF-8, an id that overflows its column become quarantine records with their reason, and the rest of the range
lands. Ids missing from the reference data are not a reason: such events land (inferred members). Pure logic, no
services; the same cases through Kafka and HDFS are in test_landing_recovery.py."""

import json

import pytest

from tv_platform.streaming import MAX_ID, MAX_PAYLOAD_BYTES, Message, validate

DAY = "2023-09-23"


def event(i: int, **overrides) -> bytes:
    e = {"session_id": f"{i:032x}", "user_id": 1 + i % 50, "channel_id": 1 + i % 148, "timer": f"{DAY} 20:00:00",
         "status": "enabled"} | overrides
    return json.dumps(e).encode()


POISON = {
    "deep nesting": (b"[" * 10_000 + b"]" * 10_000, "JSON nested too deeply"),
    "deep object": (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested too deeply"),
    "huge payload": (event(0, pad="x" * (MAX_PAYLOAD_BYTES + 1)), "payload too large"),
    "invalid UTF-8": (event(0)[:-3] + b"\xff\xfe}", "payload is not UTF-8"),
    "id overflows INT": (event(0, user_id=MAX_ID + 1), "user_id out of range"),
    "id overflows int64": (event(0, channel_id=10**30), "channel_id out of range"),
    "4300-digit int": (b'{"user_id": ' + b"9" * 5_000 + b"}", "malformed JSON"),
    "float overflow": (event(0).replace(b'"user_id": 1', b'"user_id": 1e400'), "user_id is not an integer"),
    "negative id": (event(0, user_id=-5), "user_id out of range"),
    "absurd timer": (event(0, timer="9999-12-31 23:59:59"), "outside the partition"),
    "NUL in status": (event(0, status="enabled\u0000"), "unknown status"),
}


@pytest.mark.parametrize("name", sorted(POISON))
def test_a_poison_message_among_1000_good_ones_is_quarantined_and_the_rest_lands(name):
    payload, reason = POISON[name]
    messages = [Message(0, i, event(i)) for i in range(500)] + [Message(0, 500, payload)] + [
        Message(0, 501 + i, event(501 + i)) for i in range(500)]
    landing = validate(messages, DAY, set(range(1, 149)), range(1, 51))
    assert len(landing.good) == 1_000 and landing.read == 1_001
    (bad,) = landing.rejected
    assert bad.message.offset == 500 and reason in bad.reason, bad.reason
    assert len(bad.reason) < 300  # a reason, not the payload
    assert landing.good["session_id"].tolist() == [f"{i:032x}" for i in range(1_001) if i != 500]


def test_a_range_of_nothing_but_poison_is_all_quarantined():
    messages = [Message(0, i, p) for i, (p, _) in enumerate(POISON.values())]
    landing = validate(messages, DAY, set(range(1, 149)), range(1, 51))
    assert len(landing.good) == 0 and len(landing.rejected) == len(POISON)


def test_unknown_users_and_channels_land_and_are_named():
    messages = [Message(0, 0, event(0, user_id=12_345)), Message(0, 1, event(1, channel_id=500)),
                Message(0, 2, event(2)), Message(0, 3, event(3, user_id=12_345, channel_id=501))]
    landing = validate(messages, DAY, set(range(1, 149)), range(1, 51))
    assert len(landing.good) == 4 and not landing.rejected
    assert (landing.new_users, landing.new_channels) == ([12_345], [500, 501])


def test_the_replay_reader_refuses_out_of_range_ids_with_the_line(tmp_path):
    from tv_platform.simulator.live import read_recorded

    sid = "0" * 32
    path = tmp_path / "stream.csv"
    path.write_text(f"{sid},5,3,{DAY} 20:00:00,enabled\n{sid},4294967297,3,{DAY} 21:00:00,disabled\n")
    with pytest.raises(ValueError, match=r"user_id is out of range .* line\(s\) \[2\]"):
        read_recorded(path)
    path.write_text(f"{sid},5,3,{DAY} 20:00:00,enabled\n{sid},5,3,{DAY} 20:10:00,disabled\n{sid},5,0,{DAY} 21:00:00,enabled\n")
    with pytest.raises(ValueError, match=r"channel_id is out of range .* line\(s\) \[3\]"):
        read_recorded(path)
    path.write_text(f"{sid},{MAX_ID},3,{DAY} 20:00:00,enabled\n")
    assert read_recorded(path)["user_id"].tolist() == [MAX_ID]
