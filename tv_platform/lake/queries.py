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


def session_totals_sql(database: str, day, cal=None, tz: str | None = None) -> str:
    """Totals of broadcast day D straight from ``viewing_sessions`` with plain SQL (no hour slicing) — what the
    aggregates' asset checks compare against: views and seconds by start day (sessions started inside D), and seconds
    inside D (each session of calendar days D-1..D+1 clipped to D). D runs from D at TVP_BROADCAST_DAY_START to that
    time on D+1 (``cal``; default the settings'), seconds are real time of the operator's zone (TVP_TIMEZONE)."""
    from tv_platform.dates import zone_name

    if cal is None:
        from tv_platform.lake.calendar import BroadcastCalendar

        cal = BroadcastCalendar.from_settings()
    d = as_date(day)
    prev, nxt = d.fromordinal(d.toordinal() - 1), d.fromordinal(d.toordinal() + 1)
    db = f"`{database}`"
    lo, _ = cal.window(d)
    day_s = cal.day_seconds(d, tz)
    name = zone_name(tz)

    def real(expr: str) -> str:
        return expr if name == "UTC" else f"convert_timezone('{name}', 'UTC', {expr})"

    begin = real(f"TIMESTAMP_NTZ'{lo:%Y-%m-%d %H:%M:%S}'")
    start = f"timestampdiff(SECOND, {begin}, {real('CAST(time_start AS TIMESTAMP_NTZ)')})"
    end = f"timestampdiff(SECOND, {begin}, {real('CAST(time_end AS TIMESTAMP_NTZ)')})"
    return f"""
SELECT
    count(CASE WHEN s >= 0 AND s < {day_s} THEN 1 END) AS views,
    coalesce(sum(CASE WHEN s >= 0 AND s < {day_s} THEN duration_s END), 0) AS by_start_s,
    coalesce(sum(greatest(0, least(e, {day_s}) - greatest(s, 0))), 0) AS in_day_s
FROM (SELECT {start} AS s, {end} AS e, duration_s FROM {db}.viewing_sessions
      WHERE dt IN ('{prev.isoformat()}', '{d.isoformat()}', '{nxt.isoformat()}'))
"""



def of_days_sql(day_sql, days) -> str:
    """A one-row query of a day (``day_sql(day)``) for several days in one query — one Spark job instead of one a
    day: its rows, each with the day as ``dt``."""
    return "\nUNION ALL\n".join(f"SELECT '{as_date(d).isoformat()}' AS dt, * FROM ({day_sql(d)})" for d in days)


def session_totals_of_days_sql(database: str, days, cal=None, tz: str | None = None) -> str:
    """:func:`session_totals_sql` of several broadcast days in one query, a row per day with its ``dt``."""
    return of_days_sql(lambda d: session_totals_sql(database, d, cal, tz), days)
