"""Mart declarations of the programme tables, ready for ``tv_platform.assets.marts.MARTS``.

Not merged into ``MARTS`` yet: ``tv_platform_tests/test_marts.py`` / ``test_marts_lake.py`` and docs/marts.md assume
exactly the lake's 7 marts (14 assets, columns from ``lake.tables``). To publish them, the marts' owner adds
``**PROGRAMME_MARTS`` to ``MARTS`` and updates those tests and docs (see docs/programmes.md, "Marts")."""

from tv_platform.assets.marts import (
    CHANNEL_ID, COUNT, DAY_TS, DT, FLOAT, LABEL, NAME, RANK, RATIO, SMALL, TEXT, Mart,
)

PROGRAMME_MARTS: dict[str, Mart] = {
    # tv_platform/assets/programmes.py, docs/programmes.md
    "programme_popularity": Mart(
        source="programme_popularity",
        columns={
            "dt": DT, "rank": RANK, "channel_id": CHANNEL_ID, "channel_name": NAME, "programme_id": TEXT,
            "title": TEXT, "kind": LABEL, "genre": NAME, "series": NAME, "episode": ("integer", "Nullable(UInt32)"),
            "programme_start": DAY_TS, "programme_end": DAY_TS, "duration_min": FLOAT, "sessions": COUNT,
            "viewers": COUNT, "minutes": FLOAT, "avg_minute_audience": RATIO, "channel_share_pct": RATIO,
            "tv_share_pct": RATIO,
        },
        sums=("sessions", "minutes"),
        distributed_by=("channel_id",),
        order_by=("dt", "channel_id", "programme_start"),
        description="Per programme on screen in the day: viewers, minutes, average minute audience, share of the "
                    "channel's and of all viewing during it",
    ),
    "series_popularity": Mart(
        source="series_popularity",
        columns={
            "dt": DT, "rank": RANK, "series": TEXT, "kind": LABEL, "genre": NAME, "channels": COUNT,
            "airings": COUNT, "airtime_min": FLOAT, "sessions": COUNT, "viewers": COUNT, "minutes": FLOAT,
            "avg_minute_audience": RATIO, "tv_share_pct": RATIO,
        },
        sums=("sessions", "minutes"),
        distributed_by=("series",),
        order_by=("dt", "series"),
        description="Per series (recurring strand) in the day: airings, viewers, minutes, average minute audience, "
                    "share of all viewing during its airings",
    ),
    "series_weekday_hour": Mart(
        source="series_weekday_hour",
        columns={
            "dt": DT, "series": TEXT, "kind": LABEL, "weekday": SMALL, "weekday_name": LABEL, "hour": SMALL,
            "minutes": FLOAT, "avg_audience": FLOAT, "sessions": COUNT, "viewers": COUNT,
        },
        sums=("sessions", "minutes"),
        distributed_by=("series",),
        order_by=("dt", "series", "hour"),
        description="Series × weekday × hour heatmap cells: minutes of each series watched per clock hour",
    ),
    "top_programmes": Mart(
        source="top_programmes",
        columns={
            "dt": DT, "chart": LABEL, "rank": RANK, "name": TEXT, "kind": LABEL, "channel_name": NAME,
            "first_start": DAY_TS, "minutes": FLOAT, "viewers": COUNT, "avg_minute_audience": RATIO,
            "tv_share_pct": RATIO,
        },
        sums=("viewers", "minutes"),
        distributed_by=("dt",),
        order_by=("dt", "chart", "rank"),
        description="The day's top 10 programmes and top 10 series by minutes watched",
    ),
}
