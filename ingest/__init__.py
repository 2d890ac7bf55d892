"""MQTT in: topic scheme, payload decoders, validation, units, the point registry, dead
letters and the InfluxDB writer.

Owns everything between a sensor's bytes and a validated, normalised `Reading`.
Must not import `rules`, `alerts`, `dashboards` or `hazardwatch`. Pure modules (`model`,
`gases`, `units`, `registry`, `decode`, `normalize`, `codec`, `lineprotocol`, `pipeline`)
do no I/O and take time as an argument; adapters (`mqtt`, `bridge`, `influx`) sit at the
edges.

Modules, in the order a message meets them:
- `mqtt`: `MqttSource` (paho-mqtt 2.x, QoS 1, persistent session, shared subscriptions),
  `DeadLetterPublisher`, `MqttPublisher`, `MqttConfig`.
- `pipeline`: `Ingestor`, the stage in one object (normalise, count, dead letters, readings).
- `normalize`: `Normalizer(registry, NormalizeConfig).normalize(topic, payload, received_ms)`.
- `decode`: decoders by name (`canonical`, `provincial`, plug-ins via `register_decoder`).
- `registry`, `units`, `gases`: the point registry, unit conversions, gas properties.
- `codec`: readings and dead letters on the wire (Kafka, MQTT dead-letter topic).
- `bridge`: distributed mode's MQTT -> Kafka bridge.
- `lineprotocol`, `influx`: InfluxDB line protocol, `InfluxWriter`, `LineProtocolFileWriter`.
- `metrics`: counters per reject reason (prometheus-client optional).
"""
