"""Rule files (schema, loader, lint), versioned standard packs, the pure evaluation engine,
coloured warnings, and replay/backtest.

Imports `ingest` (registry, readings) only; never `alerts`, `dashboards` or `hazardwatch`.
Nothing here calls the clock: `now` is an argument, replay passes event time.
"""
