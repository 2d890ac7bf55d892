"""Pushes the generated dashboards and the InfluxDB datasource to a running Grafana through its
HTTP API (grafana-client): one folder per area, idempotent (every object is compared with
what Grafana has and written only when it differs), the token never in output or errors.

I/O adapter; `grafana_client` exceptions become `PushError` with the URL and the step.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.generate import DATASOURCE_UID, Generated

DATASOURCE_NAME = "hazardwatch InfluxDB"
#: Dashboard keys Grafana manages itself (not part of what we generate).
_SERVER_KEYS = ("id", "version")


class PushError(Exception):
    """The push failed: one line naming the Grafana URL, the step and the reason."""


@dataclass(frozen=True)
class InfluxSource:
    """Where the Grafana datasource points (the token only goes into `secureJsonData`)."""

    url: str
    org: str
    bucket: str
    token: str = ""

    def __repr__(self) -> str:
        return f"InfluxSource(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


def datasource_model(src: InfluxSource) -> dict[str, Any]:
    """The InfluxDB (Flux) datasource, without its secret (the provisioning file has the
    same fields; a unit test keeps them equal)."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": src.url,
        "isDefault": True,
        "jsonData": {
            "version": "Flux",
            "organization": src.org,
            "defaultBucket": src.bucket,
            "httpMode": "POST",
            "timeInterval": "10s",
        },
    }


def folder_uid(title: str) -> str:
    """Folders and dashboards share one uid space in Grafana 10, hence the `folder` part."""
    return "hw-folder-" + "-".join(title.lower().split())


@dataclass
class PushReport:
    """What the push did, one entry per object: (action, kind, name)."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, action: str, kind: str, name: str) -> None:
        self.actions.append((action, kind, name))

    @property
    def changed(self) -> int:
        return sum(1 for a, _, _ in self.actions if a != "unchanged")


def _step(api_url: str, what: str, call, *args: Any) -> Any:
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaUnauthorizedError,
    )

    try:
        return call(*args)
    except GrafanaUnauthorizedError:
        raise PushError(
            f"Grafana at {api_url} rejected the token while trying to {what} (HTTP 401)"
        ) from None
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise PushError(
                f"Grafana at {api_url} refused to {what} (HTTP 403): the token's service "
                "account needs the Editor role (Admin for datasources)"
            ) from None
        raise PushError(
            f"Grafana at {api_url}: cannot {what}: HTTP {exc.status_code} {_msg(exc.response)}"
        ) from None
    except GrafanaException as exc:
        raise PushError(f"Grafana at {api_url}: cannot {what}: {exc.message}") from None
    except OSError as exc:
        raise PushError(f"cannot reach Grafana at {api_url} to {what}: {exc}") from None
    except Exception as exc:  # niquests connection errors are not OSError subclasses
        if type(exc).__module__.startswith(("niquests", "urllib3")):
            raise PushError(
                f"cannot reach Grafana at {api_url} to {what}: {type(exc).__name__}"
            ) from None
        raise


def _msg(response: Any) -> str:
    if isinstance(response, dict):
        return str(response.get("message", ""))
    return str(response)[:200]


def _missing(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def connect(url: str, token: str, timeout: float = 10.0) -> Any:
    from grafana_client import GrafanaApi

    if not url:
        raise PushError("no Grafana URL configured (grafana.url / HW_GRAFANA__URL)")
    if not token:
        raise PushError("no Grafana token configured (grafana.token / HW_GRAFANA__TOKEN)")
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def push(
    api: Any,
    dashboards: Sequence[Generated],
    source: InfluxSource,
    *,
    message: str = "hazardwatch dashboards push",
) -> PushReport:
    """Make Grafana hold exactly our datasource, folders and dashboards (others untouched)."""
    url = getattr(api, "url", "") or "Grafana"
    report = PushReport()

    # Datasource: compare the public part; the token is sent on create and on change.
    want = datasource_model(source)
    have = _step(
        url, "read the datasource", _or_none, api.datasource.get_datasource_by_uid, DATASOURCE_UID
    )
    secure = {"secureJsonData": {"token": source.token}} if source.token else {}
    if have is None:
        _step(url, "create the datasource", api.datasource.create_datasource, want | secure)
        report.add("created", "datasource", DATASOURCE_NAME)
    elif {k: have.get(k) for k in want} != want:
        _step(
            url,
            "update the datasource",
            api.datasource.update_datasource_by_uid,
            DATASOURCE_UID,
            want | secure,
        )
        report.add("updated", "datasource", DATASOURCE_NAME)
    else:
        report.add("unchanged", "datasource", DATASOURCE_NAME)

    # One folder per area, matched by uid (titles can be renamed in the UI).
    folders = {f["uid"]: f for f in _step(url, "list folders", api.folder.get_all_folders)}
    for title in sorted({g.folder for g in dashboards}):
        uid = folder_uid(title)
        if uid not in folders:
            _step(url, f"create folder {title!r}", api.folder.create_folder, title, uid)
            report.add("created", "folder", title)
        else:
            report.add("unchanged", "folder", title)

    for g in dashboards:
        fuid = folder_uid(g.folder)
        current = _step(
            url, f"read dashboard {g.uid}", _or_none, api.dashboard.get_dashboard, g.uid
        )
        if current is not None:
            model = {k: v for k, v in current.get("dashboard", {}).items() if k not in _SERVER_KEYS}
            if model == g.model and current.get("meta", {}).get("folderUid") == fuid:
                report.add("unchanged", "dashboard", g.uid)
                continue
        body = {
            "dashboard": copy.deepcopy(g.model),
            "folderUid": fuid,
            "overwrite": True,
            "message": message,
        }
        _step(url, f"save dashboard {g.uid}", api.dashboard.update_dashboard, body)
        report.add("created" if current is None else "updated", "dashboard", g.uid)
    return report


def _or_none(call, *args: Any) -> Any:
    """The call's result, or None when Grafana answers 404 (not there yet)."""
    from grafana_client.client import GrafanaClientError

    try:
        return call(*args)
    except GrafanaClientError as exc:
        if _missing(exc):
            return None
        raise
