"""InfluxDB adapter of the dashboards package: write `Row`s, run a panel's Flux query the way
Grafana would (macros expanded), and create a database on InfluxDB 1.8.

I/O; `influxdb_client` errors are translated into `InfluxError` with the URL, never the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from dashboards.queries import interpolate
from dashboards.series import Row


class InfluxError(Exception):
    """InfluxDB refused or could not be reached (message names the URL and what failed)."""


@dataclass(frozen=True)
class InfluxConfig:
    url: str
    token: str  # "user:password" on InfluxDB 1.8; never printed
    org: str = "-"
    bucket: str = "hazardwatch/autogen"

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"InfluxConfig(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_database(cfg: InfluxConfig, database: str) -> None:
    """`CREATE DATABASE` over InfluxQL (InfluxDB 1.8; idempotent)."""
    user, _, password = cfg.token.partition(":")
    try:
        r = httpx.post(
            f"{cfg.url.rstrip('/')}/query",
            params={"q": f'CREATE DATABASE "{database}"'},
            auth=(user, password),
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise InfluxError(f"cannot reach InfluxDB at {cfg.url}: {exc}") from None
    if r.status_code != 200 or '"error"' in r.text:
        raise InfluxError(f"CREATE DATABASE {database} at {cfg.url} failed: HTTP {r.status_code}")


def drop_database(cfg: InfluxConfig, database: str) -> None:
    user, _, password = cfg.token.partition(":")
    httpx.post(
        f"{cfg.url.rstrip('/')}/query",
        params={"q": f'DROP DATABASE "{database}"'},
        auth=(user, password),
        timeout=10,
    )


class Influx:
    """A connection to one bucket: write rows, run Flux."""

    def __init__(self, cfg: InfluxConfig) -> None:
        from influxdb_client import InfluxDBClient

        self.cfg = cfg
        self._client = InfluxDBClient(url=cfg.url, token=cfg.token, org=cfg.org, timeout=60_000)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Influx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, rows: Iterable[Row], batch: int = 10_000) -> int:
        """Write rows as line protocol (ms precision); returns how many."""
        from influxdb_client import WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        api = self._client.write_api(write_options=SYNCHRONOUS)
        buf: list[str] = []
        n = 0
        try:
            for row in rows:
                buf.append(row.line())
                if len(buf) >= batch:
                    api.write(
                        self.cfg.bucket,
                        self.cfg.org,
                        "\n".join(buf),
                        write_precision=WritePrecision.MS,
                    )
                    n += len(buf)
                    buf = []
            if buf:
                api.write(
                    self.cfg.bucket, self.cfg.org, "\n".join(buf), write_precision=WritePrecision.MS
                )
                n += len(buf)
        except Exception as exc:  # noqa: BLE001 - client raises ApiException, urllib3 errors, ...
            raise InfluxError(
                f"writing to {self.cfg.bucket} at {self.cfg.url} failed: {_reason(exc)}"
            ) from None
        finally:
            api.close()
        return n

    def query(self, flux: str) -> list[Any]:
        """Run Flux; returns `influxdb_client` FluxTables."""
        try:
            return list(self._client.query_api().query(flux, org=self.cfg.org))
        except Exception as exc:  # noqa: BLE001 - translated for the caller, token-free
            raise InfluxError(f"Flux query at {self.cfg.url} failed: {_reason(exc)}") from None

    def panel_query(
        self,
        flux: str,
        start_ms: int,
        stop_ms: int,
        *,
        window: str = "5m",
        variables: Mapping[str, Sequence[str] | None] | None = None,
    ) -> list[Any]:
        """Run a dashboard query as Grafana would for that time range and variables."""
        return self.query(
            interpolate(
                flux,
                start=rfc3339(start_ms),
                stop=rfc3339(stop_ms),
                window=window,
                bucket=self.cfg.bucket,
                variables=variables,
            )
        )

    def records(self, flux: str, start_ms: int, stop_ms: int, **kw: Any) -> list[dict[str, Any]]:
        """`panel_query` flattened to one dict per row."""
        return [
            r.values for t in self.panel_query(flux, start_ms, stop_ms, **kw) for r in t.records
        ]


def _reason(exc: Exception) -> str:
    headers = getattr(exc, "headers", None) or {}
    detail = headers.get("X-Influxdb-Error") if hasattr(headers, "get") else None
    status = getattr(exc, "status", None)
    if detail:
        return f"HTTP {status}: {detail}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
