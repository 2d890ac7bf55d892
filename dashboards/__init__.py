"""Grafana dashboards and datasources as code, generated from the point registry and the
rule files (thresholds are never typed twice), the push to Grafana, the InfluxDB rows the
panels read, and the duty officers' daily report.

Imports `rules` and `ingest`; never `alerts` (the report takes an alert store by duck type)
and never `hazardwatch`. Pure modules (`generate`, `queries`, `flux`, `validate`, `series`,
`testing`) do no I/O; adapters (`influx`, `push`, `report`, `report_render`) sit at the edges.

Modules:
- `generate`: `build_all(registry, ruleset) -> [Generated(uid, folder, model)]`, `dumps`:
  the city overview, a drill-down per enterprise, alarm management, pipeline health.
- `queries`: the Flux of every panel (InfluxDB 1.8 / Flux 0.65) and `interpolate`, the
  macro and variable expansion Grafana does.
- `flux`: the InfluxDB (Flux) query type the Grafana Foundation SDK lacks.
- `validate`: `validate(model) -> [problem]` against the SDK's Grafana 11 dashboard schema.
- `series`: `Row`s for alarms, warnings, risk, online rate, pipeline, notifications and
  dispositions (docs/influx-schema.md).
- `push`: `push(api, dashboards, source)` through grafana-client, idempotent;
  `fake_grafana.FakeGrafana` is the recording stand-in for tests and demos.
- `influx`: write rows, run a panel's query as Grafana would.
- `report`, `report_render`: `collect(...) -> DailyReport`, `render(report, out_dir)`.
- `testing`: a replayed simulated day as InfluxDB rows (tests and demos).
"""
