"""The XMLTV importer keeps every programme a real guide holds (issue #16 point 6): missing stops, clumps, same-minute
starts, overlaps, times without an offset — each resolved by the documented rule and counted. Expected values are
written out by hand from docs/programmes.md ("XMLTV import")."""

from __future__ import annotations

import pandas as pd

from tv_platform.epg.guide import coverage_problems, normalize_day
from tv_platform.epg.xmltv import LAST_PROGRAMME_MINUTES, parse_xmltv

D = "2023-09-23"
DOC = """<?xml version="1.0" encoding="UTF-8"?>
<tv>
  <channel id="a"><display-name>A</display-name></channel>
  <channel id="b"><display-name>B</display-name></channel>
  <programme start="20230923200000 +0300" channel="a"><title>No stop</title></programme>
  <programme start="20230923203000 +0300" stop="20230923210000 +0300" channel="a"><title>Middle</title></programme>
  <programme start="20230923203000 +0300" stop="20230923210000 +0300" channel="a"><title>Middle</title></programme>
  <programme start="20230923220000 +0300" stop="20230923230000 +0300" channel="a" clumpidx="1/2"><title>Clump two</title></programme>
  <programme start="20230923220000 +0300" stop="20230923230000 +0300" channel="a" clumpidx="0/2"><title>Clump one</title></programme>
  <programme start="20230923230000 +0300" stop="20230923233000 +0300" channel="a"><title>Same minute 1</title></programme>
  <programme start="20230923230030 +0300" stop="20230923233000 +0300" channel="a"><title>Same minute 2</title></programme>
  <programme start="20230923233000 +0300" stop="20230924003000 +0300" channel="a"><title>Overlapping</title></programme>
  <programme start="20230924000000 +0300" channel="a"><title>Last, no stop</title></programme>
  <programme start="20230923100000" stop="20230923110000" channel="b"><title>Local time</title></programme>
  <programme start="20230923120000 +0000" stop="20230923130000 +0000" channel="b"><title>UTC</title></programme>
  <programme start="garbage" stop="20230923130000 +0300" channel="b"><title>Bad</title></programme>
  <programme start="20230923140000 +0300" stop="20230923150000 +0300" channel="elsewhere"><title>X</title></programme>
</tv>
""".encode()
MAP = {"a": 1, "b": 2}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def test_every_programme_kept_and_every_rule_counted():
    g = parse_xmltv(DOC, MAP, "Europe/Moscow")
    a = g[g["channel_id"] == 1].reset_index(drop=True)
    got = list(zip(a["title"], a["start"], a["end"], a["programme_id"]))
    assert got == [
        # no stop: ends where the channel's next programme starts
        ("No stop", ts("2023-09-23 20:00"), ts("2023-09-23 20:30"), "1-202309232000"),
        # its exact duplicate is one programme
        ("Middle", ts("2023-09-23 20:30"), ts("2023-09-23 21:00"), "1-202309232030"),
        # the clump shares its hour in clump order, ids made distinct
        ("Clump one", ts("2023-09-23 22:00"), ts("2023-09-23 22:30"), "1-202309232200"),
        ("Clump two", ts("2023-09-23 22:30"), ts("2023-09-23 23:00"), "1-202309232200~2"),
        # same-minute starts: distinct ids; the earlier one ends where the later starts (overlap rule)
        ("Same minute 1", ts("2023-09-23 23:00"), ts("2023-09-23 23:00:30"), "1-202309232300"),
        ("Same minute 2", ts("2023-09-23 23:00:30"), ts("2023-09-23 23:30"), "1-202309232300~2"),
        ("Overlapping", ts("2023-09-23 23:30"), ts("2023-09-24 00:00"), "1-202309232330"),
        # the channel's last programme without a stop: the documented default length
        ("Last, no stop", ts("2023-09-24 00:00"), ts("2023-09-24 00:00") + pd.Timedelta(minutes=LAST_PROGRAMME_MINUTES),
         "1-202309240000"),
    ]
    b = g[g["channel_id"] == 2].set_index("title")
    assert b.loc["Local time", "start"] == ts("2023-09-23 10:00")  # no offset: the operator's wall clock
    assert b.loc["UTC", "start"] == ts("2023-09-23 15:00")  # 12:00 UTC = 15:00 Moscow
    c = g.attrs["counts"]
    assert c == {"programmes_read": 13, "skipped_unmapped_channel": 1, "invalid": 1, "stop_from_next_start": 1,
                 "stop_defaulted": 1, "shared_slots": 1, "overlaps_trimmed": 2, "duplicates": 1,
                 "programmes_kept": 10}
    # nothing unaccounted for
    assert c["programmes_kept"] + c["skipped_unmapped_channel"] + c["invalid"] + c["duplicates"] == c["programmes_read"]
    assert g.attrs["skipped_channels"] == ["elsewhere"] and "garbage" in g.attrs["invalid"][0]
    assert g["programme_id"].is_unique


def test_the_day_keeps_every_programme_and_covers_it_exactly():
    g = parse_xmltv(DOC, MAP, "Europe/Moscow")
    day = normalize_day(g, D, channel_ids=[1, 2])
    assert coverage_problems(day, D) == []
    # every imported programme on screen in D is in the day's guide, under its own id
    on_screen = g[(g["end"] > ts(D)) & (g["start"] < ts("2023-09-24"))]
    assert set(on_screen["programme_id"]) <= set(day["programme_id"])
    # the programmes partition each channel's day: viewing split over them conserves every second
    seconds = (day["end"] - day["start"]).dt.total_seconds().groupby(day["channel_id"]).sum()
    assert (seconds == 86_400).all()
    assert day.attrs["counts"]["programmes_kept"] == 10  # the counts travel to the asset's metadata
