"""MQTT in: topic scheme, payload decoders, validation, units, the point registry, dead
letters and the InfluxDB writer.

Owns everything between a sensor's bytes and a validated, normalised `Reading`.
Must not import `rules`, `alerts`, `dashboards` or `hazardwatch`. Pure modules (`model`,
`decode`, `units`, `normalize`, `registry`) do no I/O and take time as an argument;
adapters (`mqtt`, `bridge`, `influx`) sit at the edges.
"""
