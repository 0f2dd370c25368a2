"""The lake file system on file:// — the same code as on HDFS, for laptops and tests without HDFS (#3)."""

import pandas as pd
import pytest

from tv_platform.engines.hdfs import LakeError, LakeFS, frame_to_csv_bytes, read_csv_bytes


def test_file_lake_writes_atomically_and_replaces_a_partition(tmp_path):
    fs = LakeFS(url=f"file://{tmp_path}")
    fs.write_text("/raw/x/dt=2023-09-23/a.csv", "old\n")
    assert fs.listdir("/raw/x/dt=2023-09-23") == ["a.csv"]  # no temporary file left behind
    fs.replace_dir("/raw/x/dt=2023-09-23", {"events.csv": b"new\n"})
    assert fs.listdir("/raw/x/dt=2023-09-23") == ["events.csv"]
    assert fs.read_text("/raw/x/dt=2023-09-23/events.csv") == "new\n"
    assert [n for n in fs.listdir("/raw/x") if n.startswith(".")] == []  # staging and old copies are gone
    assert fs.uri("/raw/x") == f"file://{tmp_path}/raw/x"
    fs.delete("/raw")
    assert not fs.exists("/raw")


def test_csv_round_trip_keeps_declared_types():
    columns = {"session_id": "str", "user_id": "int64", "timer": "datetime64[s]", "status": "str"}
    frame = pd.DataFrame({"session_id": ["a" * 32], "user_id": [7], "timer": [pd.Timestamp("2023-09-23 20:00:05")],
                          "status": ["enabled"]})
    back = read_csv_bytes(frame_to_csv_bytes(frame), columns)
    assert back.dtypes["user_id"] == "int64" and str(back.dtypes["timer"]) == "datetime64[s]"
    assert back.iloc[0].tolist() == frame.iloc[0].tolist()


def test_unsupported_scheme_is_a_clear_error():
    with pytest.raises(LakeError, match="unsupported lake URL scheme 's3'"):
        LakeFS(url="s3://bucket/lake")
    with pytest.raises(LakeError, match="needs the WebHDFS URL"):
        LakeFS(url="hdfs://namenode:8020")
