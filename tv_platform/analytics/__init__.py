"""Analytics and forecasting over the lake's daily tables (issue #7).

    measures.py   leaders/outsiders, weekday vs weekend, prime-time concentration, retention, reach/share/AMA
                  — pure pandas functions of the small daily aggregates (testable without Spark)
    segments.py   per-user hour-of-day profiles (Spark) and k-means segments (Spark MLlib over Spark Connect)
    forecast.py   seasonal-naive baseline and a calendar-feature ridge model (numpy), backtest, MAPE
    charts.py     matplotlib figures → small PNGs and markdown for the Dagster UI

The assets are in tv_platform/assets/analytics.py; see docs/analytics.md.
"""
