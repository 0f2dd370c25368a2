"""The programme guide without services: the synthetic generator (determinism, exact day coverage, schedules that
fit the channel) and the XMLTV importer on a small file written here."""

from datetime import date, timedelta

import pandas as pd
import pytest

from tv_platform.epg.generator import channel_profile, make_guide
from tv_platform.epg.guide import GAP_TITLE, GUIDE_COLUMNS, coverage_problems, normalize_day
from tv_platform.epg.xmltv import parse_xmltv, parse_time
from tv_platform.simulator.reference import load_channels

WEEK = [(date(2023, 9, 18) + timedelta(days=i)).isoformat() for i in range(7)]  # Mon 18 .. Sun 24 Sep 2023


@pytest.fixture(scope="module")
def channels():
    return load_channels()


@pytest.fixture(scope="module")
def week(channels):
    return {d: make_guide(d, 42, channels) for d in WEEK}


def _id(channels, name):
    return int(channels.loc[channels["channel_name"] == name, "channel_id"].iloc[0])


def test_deterministic_for_seed_and_date(channels, week):
    again = make_guide(WEEK[0], 42, channels)
    pd.testing.assert_frame_equal(again, week[WEEK[0]])
    assert not make_guide(WEEK[0], 43, channels).equals(again)
    assert list(again.columns) == list(GUIDE_COLUMNS)
    assert {c: str(t) for c, t in again.dtypes.items()} == GUIDE_COLUMNS
    assert again["programme_id"].is_unique


def test_every_channel_covered_exactly_every_day(channels, week):
    for day, guide in week.items():
        assert coverage_problems(guide, day) == [], day
        assert set(guide["channel_id"]) == set(channels["channel_id"])
        assert (guide["start"] >= pd.Timestamp(day)).all() and (guide["end"] <= pd.Timestamp(day) + pd.Timedelta(days=1)).all()
        per_channel = (guide["end"] - guide["start"]).dt.total_seconds().groupby(guide["channel_id"]).sum()
        assert (per_channel == 86_400).all()


def test_schedules_fit_the_channel(channels, week):
    assert channel_profile("Россия 24") == "news" and channel_profile("РБК") == "news"
    assert channel_profile("МАТЧ! ТВ") == "sport" and channel_profile("Карусель") == "kids"
    assert channel_profile("Кинопоказ") == "film" and channel_profile("Иллюзион плюс") == "film"
    assert channel_profile("Russia Today Doc HD") == "documentary" and channel_profile("Первый канал") == "general"
    g = week[WEEK[2]]
    kinds = lambda name: set(g.loc[g["channel_id"] == _id(channels, name), "kind"])  # noqa: E731
    assert "news" in kinds("Россия 24") and "film" not in kinds("Россия 24")
    assert (g.loc[g["channel_id"] == _id(channels, "Россия 24"), "start"].dt.minute == 0).sum() == 24  # hourly news
    assert kinds("Кинопоказ") == {"film"} and kinds("Карусель") == {"kids"}
    assert "sport" in kinds("МАТЧ! ТВ")
    assert {"news", "series", "film", "show"} <= kinds("Первый канал")
    # films on the general channels: evening on weekdays
    general = g["channel_id"].map(dict(zip(channels["channel_id"], channels["channel_name"].map(channel_profile))))
    films = g[(general == "general") & (g["kind"] == "film")]
    assert len(films) and (films["start"].dt.hour >= 21).all()
    # one-off programmes have no series; recurring strands have an episode
    assert (g.loc[g["series"] == "", "episode"] == 0).all() and (g.loc[g["series"] != "", "episode"] > 0).all()
    assert (g.loc[g["kind"].isin(["film", "news", "sport"]), "series"] == "").all()


def test_series_recur_in_the_same_weekday_slot(channels, week):
    slot = lambda g: g.assign(slot=g["start"].dt.strftime("%H:%M")).set_index(["channel_id", "slot"])  # noqa: E731
    mon, tue = slot(week[WEEK[0]]), slot(week[WEEK[1]])
    series = mon[mon["kind"] == "series"]
    assert len(series) > 100
    assert (tue.loc[series.index, "series"] == series["series"]).all()
    assert (tue.loc[series.index, "episode"] == series["episode"] + 1).all()
    # films change from day to day
    films = mon[(mon["kind"] == "film")]
    assert (tue.loc[films.index, "title"] != films["title"]).mean() > 0.5


XMLTV = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv generator-info-name="test">
  <channel id="r24"><display-name lang="ru">Россия 24</display-name></channel>
  <channel id="ch-one"><display-name lang="ru">Первый канал</display-name><display-name>1TV</display-name></channel>
  <channel id="nobody"><display-name>Not ours</display-name></channel>
  <programme start="20230922230000 +0300" stop="20230923010000 +0300" channel="r24">
    <title lang="ru">Вести. Ночь</title><category lang="ru">Новости</category></programme>
  <programme start="20230923010000 +0300" stop="20230923120000 +0300" channel="r24">
    <title lang="ru">Документальный фильм</title><category lang="ru">Документальный</category></programme>
  <programme start="20230923150000 +0300" stop="20230924030000 +0300" channel="r24">
    <title lang="ru">Вести</title><category lang="en">News</category></programme>
  <programme start="20230923170000 +0000" stop="20230923180000 +0000" channel="ch-one">
    <title lang="ru">Тайны следствия</title><sub-title lang="ru">Серия 5</sub-title>
    <category lang="ru">Сериал</category><episode-num system="xmltv_ns">2.4.0/1</episode-num></programme>
  <programme start="20230923210000 +0300" stop="20230923233000 +0300" channel="ch-one">
    <title lang="ru">Большой фильм</title><category lang="ru">Художественный фильм</category></programme>
  <programme start="20230923100000 +0300" stop="20230923110000 +0300" channel="nobody">
    <title>Elsewhere</title></programme>
</tv>
"""


def test_xmltv_import(tmp_path, channels):
    path = tmp_path / "guide.xml"
    path.write_text(XMLTV, encoding="utf-8")
    names = {n: int(i) for i, n in zip(channels["channel_id"], channels["channel_name"])}
    r24, one = names["Россия 24"], names["Первый канал"]
    raw = parse_xmltv(path.read_bytes(), names)
    assert raw.attrs["skipped_channels"] == ["nobody"]
    assert list(raw.columns) == list(GUIDE_COLUMNS) and len(raw) == 5
    series = raw[raw["kind"] == "series"].iloc[0]
    assert series["channel_id"] == one and series["series"] == "Тайны следствия" and series["episode"] == 5
    assert series["start"] == pd.Timestamp("2023-09-23 20:00:00")  # 17:00 UTC = 20:00 Moscow
    assert parse_time("20230923200000 +0300") == pd.Timestamp("2023-09-23 20:00:00")
    assert parse_time("202309232000") == pd.Timestamp("2023-09-23 20:00:00")
    assert set(raw.loc[raw["channel_id"] == r24, "kind"]) == {"news", "documentary"}
    assert raw.loc[raw["title"] == "Большой фильм", "kind"].item() == "film"

    day = normalize_day(raw, "2023-09-23", channel_ids=[r24, one, 5])
    assert coverage_problems(day, "2023-09-23") == []
    r = day[day["channel_id"] == r24].reset_index(drop=True)
    assert list(r["title"]) == ["Вести. Ночь", "Документальный фильм", GAP_TITLE, "Вести"]
    assert r["start"].iloc[0] == pd.Timestamp("2023-09-23 00:00") and r["end"].iloc[-1] == pd.Timestamp("2023-09-24")
    assert r["programme_id"].iloc[0] == f"{r24}-202309222300"  # the id of the programme that began the day before
    assert list(day.loc[day["channel_id"] == 5, "kind"]) == ["unknown"]  # no guide at all: one gap programme
    o = day[day["channel_id"] == one]
    assert list(o["kind"]) == ["unknown", "series", "film", "unknown"]  # 20:00-21:00 then 21:00-23:30


def test_asset_builds_guide_from_xmltv(tmp_path):
    from tv_platform.assets.programmes import ProgrammeGuideConfig, build_guide

    path = tmp_path / "guide.xml"
    path.write_text(XMLTV, encoding="utf-8")
    guide = build_guide("2023-09-23", ProgrammeGuideConfig(seed=42, xmltv_file=str(path)))
    assert coverage_problems(guide, "2023-09-23") == [] and guide["channel_id"].nunique() == 148
    assert (guide["kind"] == "unknown").sum() >= 146


def test_programme_marts_declare_exactly_the_lake_columns():
    import dagster as dg

    from tv_platform.assets import marts as M
    from tv_platform.epg import tables as ET
    from tv_platform.epg.marts import PROGRAMME_MARTS

    for name, mart in PROGRAMME_MARTS.items():
        assert mart.source == name
        assert list(mart.columns) == ["dt"] + [c for c, _ in ET.DERIVED_TABLES[name]], name
        assert set(mart.sums) <= set(mart.columns)
    # what MARTS generates once they are merged into it
    assets = M.build(PROGRAMME_MARTS, "programme_marts")
    assert {k for a in assets for k in a.keys} == {dg.AssetKey([w, n]) for n in PROGRAMME_MARTS for w in M.WAREHOUSES}
