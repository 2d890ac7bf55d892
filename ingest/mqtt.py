"""MQTT adapter (I/O) on paho-mqtt 2.x: `MqttSource` subscribes to the gateways' topics and
hands every message to a callback; `DeadLetterPublisher` publishes rejected messages with
their reason to the dead-letter topic.

Nothing read may be lost, so the source uses QoS 1 and a persistent session (MQTT 3.1.1
`clean_session=False`; MQTT 5 `clean_start=False` plus a session expiry interval): the broker
keeps our queue while hazardwatch is down and delivers it when we return. Acknowledgements
are manual and sent only after the handler is done with a message, so a crash before that
means redelivery (at least once; the normaliser drops the duplicates). Several ingest
processes split the load through a shared subscription `$share/<group>/...`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.codec import encode_dead_letter
from ingest.metrics import Counters, IngestMetrics
from ingest.model import DeadLetter

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, int], None]
DeferredHandler = Callable[[str, bytes, int, Callable[[], None]], None]


class MqttError(Exception):
    """The MQTT adapter could not do what was asked (connect, subscribe, publish)."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Plain MQTT settings (ingest must not import `hazardwatch.settings`; the composition
    root maps `MqttSettings` to this)."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = None
    client_id: str = "hazardwatch-ingest"
    topic_prefix: str = "hw"
    qos: int = 1
    shared_group: str = ""
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    dead_letter_topic: str = "hw/_deadletter"
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60

    def __post_init__(self) -> None:
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"mqtt protocol {self.protocol!r}: expected '5' or '3.1.1'")
        if self.qos not in (0, 1):
            raise ValueError(f"mqtt qos {self.qos!r}: expected 0 or 1")
        for name in ("topic_prefix", "shared_group"):
            v = getattr(self, name)
            if any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
                raise ValueError(
                    f"mqtt {name} {v!r} must not contain '+', '#' or a leading or trailing '/'"
                )
        if "/" in self.shared_group:
            raise ValueError(f"mqtt shared_group {self.shared_group!r} must be one topic level")
        dl = self.dead_letter_topic
        if not dl or any(c in dl for c in "+#"):
            raise ValueError(
                f"mqtt dead_letter_topic {dl!r} must be a topic name without wildcards"
            )
        for f in (f"{self.topic_prefix}/+/+/data", f"{self.topic_prefix}/+/+/event"):
            if paho.topic_matches_sub(f, dl):
                # Our own subscription would read the dead letters back: an endless loop.
                raise ValueError(
                    f"mqtt dead_letter_topic {dl!r} matches the ingest "
                    f"subscription {f!r}; choose a topic outside it"
                )

    def __repr__(self) -> str:
        return (
            f"MqttConfig(host={self.host!r}, port={self.port}, protocol={self.protocol!r}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"client_id={self.client_id!r}, shared_group={self.shared_group!r})"
        )

    def topic_filters(self) -> list[str]:
        """The filters the source subscribes to (data and events of every gateway)."""
        base = [f"{self.topic_prefix}/+/+/data", f"{self.topic_prefix}/+/+/event"]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{f}" for f in base]
        return base


def _make_client(
    cfg: MqttConfig, client_id: str, manual_ack: bool, persistent: bool
) -> paho.Client:
    v5 = cfg.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        # MQTT 5 takes clean_start at connect time instead.
        clean_session=None if v5 else not persistent,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        client.tls_set(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
    return client


def _connect_async(client: paho.Client, cfg: MqttConfig, persistent: bool) -> None:
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        # How long the broker keeps our session (subscriptions + queued QoS 1 messages)
        # while we are away; 0 would end it at disconnect.
        props.SessionExpiryInterval = cfg.session_expiry_s if persistent else 0
        client.connect_async(
            cfg.host, cfg.port, cfg.keepalive_s, clean_start=not persistent, properties=props
        )
    else:
        client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)


class MqttSource:
    """Subscribe and deliver `(topic, payload, received_ms)` to `handler`, acknowledging each
    message after the handler returns. With `defer_ack=True` the handler gets a fourth
    argument, `ack()`, to call once the message is safely elsewhere (e.g. in Kafka); acks must
    then be given in the order messages arrived (MQTT requires in-order PUBACKs).

    `clock()` gives the receive time in epoch ms (injectable for tests).
    """

    def __init__(
        self,
        config: MqttConfig,
        handler: Handler | DeferredHandler,
        *,
        defer_ack: bool = False,
        filters: list[str] | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.config = config
        # Default: the gateways' data and event topics (shared when a group is configured).
        self.filters = list(filters) if filters is not None else config.topic_filters()
        self._handler = handler
        self._defer_ack = defer_ack
        self._clock = clock
        self.counters = Counters(
            ("messages", "handler_errors", "connects", "disconnects", "connect_failures")
        )
        self.last_error = ""  # why the last connection attempt failed (no secrets in it)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subs: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._client = _make_client(config, config.client_id, manual_ack=True, persistent=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> MqttSource:
        """Connect in the background (retrying with backoff until the broker answers)."""
        _connect_async(self._client, self.config, persistent=True)
        self._client.loop_start()
        return self

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """True once connected and every subscription is acknowledged by the broker."""
        return self._subscribed.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect cleanly. The broker keeps the session (and queues for it) for the
        session expiry interval, so the next start with the same client id resumes."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._subscribed.clear()

    def __enter__(self) -> MqttSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish with the source's connection (used for dead letters in embedded mode)."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        # MQTT_ERR_NO_CONN: paho queues QoS 1 messages and sends them after reconnecting.

    # ---------------------------------------------------------------- paho callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.inc("connect_failures")
            self.last_error = f"connection refused by the broker: {reason_code}"
            log.error(
                "MQTT connect to %s:%s refused: %s", self.config.host, self.config.port, reason_code
            )
            return
        self.counters.inc("connects")
        self.last_error = ""
        self._connected.set()
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.config.host,
            self.config.port,
            flags.session_present,
        )
        # Subscribe on every connect: harmless when the session kept the subscriptions, and
        # needed when the broker lost the session (restart without persistence, expiry).
        filters = [(f, self.config.qos) for f in self.filters]
        rc, mid = client.subscribe(filters)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            with self._lock:
                self._pending_subs.add(mid)

    def _on_connect_fail(self, client, userdata) -> None:
        # TCP or TLS failure (refused, unreachable, certificate not trusted): paho retries
        # with the reconnect backoff; we count it and say so once per failure streak.
        self.counters.inc("connect_failures")
        first = not self.last_error
        self.last_error = f"cannot connect to {self.config.host}:{self.config.port}"
        if first:
            log.warning("MQTT %s; retrying with backoff", self.last_error)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("MQTT subscription to %s refused: %s", self.filters, bad)
            return
        with self._lock:
            self._pending_subs.discard(mid)
            done = not self._pending_subs
        if done:
            self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self.counters.inc("disconnects")
        if not self._stopped:
            log.warning(
                "MQTT disconnected from %s:%s (%s); reconnecting with backoff",
                self.config.host,
                self.config.port,
                reason_code,
            )

    def _on_message(self, client, userdata, msg) -> None:
        received = self._clock()
        self.counters.inc("messages")
        mid, qos = msg.mid, msg.qos
        try:
            if self._defer_ack:
                acked = False

                def ack() -> None:
                    nonlocal acked
                    if not acked and qos > 0:
                        acked = True
                        client.ack(mid, qos)

                self._handler(msg.topic, msg.payload, received, ack)  # type: ignore[call-arg]
                return
            self._handler(msg.topic, msg.payload, received)  # type: ignore[call-arg]
        except Exception:
            # A handler bug must not stall the stream: the message is acknowledged (else the
            # broker stops sending once its in-flight window is full) and counted.
            self.counters.inc("handler_errors")
            log.exception("MQTT handler failed for a message on %s", msg.topic)
            if self._defer_ack and qos > 0:
                client.ack(mid, qos)
                return
        if not self._defer_ack and qos > 0:
            client.ack(mid, qos)


class DeadLetterPublisher:
    """Publishes dead letters as JSON (`ingest.codec.encode_dead_letter`) at QoS 1 and counts
    them. `publish` is any `(topic, payload) -> None`, e.g. `MqttSource.publish`."""

    def __init__(
        self,
        publish: Callable[[str, bytes], None],
        topic: str,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._publish = publish
        self.topic = topic
        self.metrics = metrics

    def __call__(self, dl: DeadLetter) -> None:
        try:
            self._publish(self.topic, encode_dead_letter(dl))
        except Exception:
            if self.metrics is not None:
                self.metrics.counters.inc("dead_letters_failed")
            log.exception("could not publish a dead letter (%s) to %s", dl.reason, self.topic)
            return
        if self.metrics is not None:
            self.metrics.counters.inc("dead_letters_published")


class MqttPublisher:
    """A small publishing client (own connection): dead letters in distributed mode, the
    simulator, tests. `publish()` waits for the broker's PUBACK up to `timeout_s`."""

    def __init__(self, config: MqttConfig, client_id: str | None = None) -> None:
        self.config = config
        self._client = _make_client(
            config, client_id or f"{config.client_id}-pub", manual_ack=False, persistent=False
        )
        self._connected = threading.Event()
        self._client.on_connect = lambda c, u, f, rc, p: (
            None if rc.is_failure else self._connected.set()
        )

    def start(self, timeout_s: float = 10.0) -> MqttPublisher:
        _connect_async(self._client, self.config, persistent=False)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._client.loop_stop()
            raise MqttError(
                f"could not connect to MQTT broker {self.config.host}:{self.config.port} "
                f"within {timeout_s:g} s"
            )
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None:
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise MqttError(f"publish to {topic!r} not acknowledged within {timeout_s:g} s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
