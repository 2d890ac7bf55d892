"""Grafana dashboards and datasources as code, generated from the point registry and the
rule files (thresholds are never typed twice), the push to Grafana, and the daily report.

Imports `rules` and `ingest`; never `alerts` internals beyond its public store API, never
`hazardwatch`.
"""
