"""SQL over the partitioned lake tables that the docs publish (docs/lake.md) and the tests run."""

from __future__ import annotations

from tv_platform.lake.sessions import as_date


def weekly_channel_rating_sql(database: str, first_day, last_day=None) -> str:
    """The seed's main table — channel rating over a week (or any range of days) — as one query.

    Hours and views are additive, so they come from the partitions of ``viewing_sessions`` like every other
    measure here; distinct viewers over a week are *not* the sum of daily distinct viewers, which is why the query
    reads sessions rather than summing ``channel_rating``. Partition pruning on ``dt`` keeps it to the week's files.
    Shares are percentages; ``sum_time`` is rounded to the hour, as the seed printed it.
    """
    first = as_date(first_day)
    last = as_date(last_day) if last_day is not None else first.fromordinal(first.toordinal() + 6)
    db = f"`{database}`"
    return f"""
WITH s AS (
    SELECT channel_id, channel_name, user_id, duration_s
    FROM {db}.viewing_sessions
    WHERE dt BETWEEN '{first.isoformat()}' AND '{last.isoformat()}'
), per_channel AS (
    SELECT channel_id, max(channel_name) AS channel_name,
           CAST(sum(duration_s) AS DOUBLE) / 3600.0 AS hours, count(*) AS views, count(DISTINCT user_id) AS viewers
    FROM s GROUP BY channel_id
)
SELECT CAST(row_number() OVER (ORDER BY hours DESC, views DESC, channel_id) AS INT) AS rank,
       channel_id, channel_name,
       CAST(round(hours) AS BIGINT) AS sum_time,
       views AS count_views,
       viewers,
       round(100.0 * hours / sum(hours) OVER (), 2) AS time_rating_pct,
       round(100.0 * viewers / sum(viewers) OVER (), 2) AS viewers_rating_pct,
       round(100.0 * views / sum(views) OVER (), 2) AS views_share_pct
FROM per_channel
ORDER BY rank
"""


def weekly_channel_rating_from_daily_sql(database: str, first_day, last_day=None) -> str:
    """Cheaper variant over the small ``channel_rating`` table: hours, views and shares of hours are exact (they add
    up over days); it has no distinct viewers over the week (daily viewers do not add up)."""
    first = as_date(first_day)
    last = as_date(last_day) if last_day is not None else first.fromordinal(first.toordinal() + 6)
    db = f"`{database}`"
    return f"""
SELECT CAST(row_number() OVER (ORDER BY sum(hours) DESC, sum(views) DESC, channel_id) AS INT) AS rank,
       channel_id, max(channel_name) AS channel_name,
       CAST(round(sum(hours)) AS BIGINT) AS sum_time, sum(views) AS count_views,
       round(100.0 * sum(hours) / sum(sum(hours)) OVER (), 2) AS time_rating_pct
FROM {db}.channel_rating
WHERE dt BETWEEN '{first.isoformat()}' AND '{last.isoformat()}'
GROUP BY channel_id
ORDER BY rank
"""


def session_totals_sql(database: str, day) -> str:
    """Totals of day D straight from ``viewing_sessions`` with plain SQL (no hour slicing) — what the aggregates'
    asset checks compare against: views and seconds by start day (sessions started on D), and seconds inside the
    calendar day D (each session of D-1 or D clipped to [D 00:00, D+1 00:00))."""
    d = as_date(day)
    prev = d.fromordinal(d.toordinal() - 1)
    db = f"`{database}`"
    midnight = f"TIMESTAMP_NTZ'{d.isoformat()} 00:00:00'"
    start = f"timestampdiff(SECOND, {midnight}, CAST(time_start AS TIMESTAMP_NTZ))"
    end = f"timestampdiff(SECOND, {midnight}, CAST(time_end AS TIMESTAMP_NTZ))"
    return f"""
SELECT
    count(CASE WHEN dt = '{d.isoformat()}' THEN 1 END) AS views,
    coalesce(sum(CASE WHEN dt = '{d.isoformat()}' THEN duration_s END), 0) AS by_start_s,
    coalesce(sum(greatest(0, least({end}, 86400) - greatest({start}, 0))), 0) AS in_day_s
FROM {db}.viewing_sessions
WHERE dt IN ('{prev.isoformat()}', '{d.isoformat()}')
"""
