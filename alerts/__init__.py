"""Alarm and warning lifecycle, routing and escalation, suppression, the durable outbox,
notification channels, the hash-chained audit journal and the HTTP API.

Consumes the alarm transitions and warnings that `rules` produces. Imports `rules` and
`ingest`; never `dashboards` or `hazardwatch`. `routing.py` and `lifecycle.py` are pure;
`channels/*`, `store.py` and `api.py` do I/O.
"""
