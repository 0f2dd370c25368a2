"""SQL over the programme tables: the weekly (any range) top series and shows — one query each, over
``programme_viewing`` (distinct viewers over a week are not a sum of daily distinct viewers)."""

from __future__ import annotations


def weekly_top_sql(database: str, first: str, last: str, by: str = "series", n: int = 10) -> str:
    """Top ``n`` strands (``by='series'``) or programme titles per channel (``by='title'``) of days first..last by
    minutes watched, with distinct viewers, sessions, airings and days on air."""
    key = "series" if by == "series" else "title, channel_name"
    where = " AND series IS NOT NULL" if by == "series" else ""
    return f"""
SELECT CAST(row_number() OVER (ORDER BY minutes DESC, viewers DESC, {key}) AS INT) AS rank, *
FROM (
    SELECT {key}, max(kind) AS kind,
           sum(minutes) AS minutes, count(DISTINCT user_id) AS viewers, count(*) AS sessions,
           count(DISTINCT programme_id) AS airings, count(DISTINCT dt) AS days
    FROM `{database}`.programme_viewing
    WHERE dt BETWEEN '{first}' AND '{last}'{where}
    GROUP BY {key}
) t
ORDER BY rank
LIMIT {int(n)}
"""
