"""The InfluxDB (Flux) query type the Grafana Foundation SDK lacks: a dataquery model, its
builder, a Flux annotation target, and their registration with the SDK's runtime so that
`Dashboard.from_json` decodes our panels back into these types (schema round-trip checks).

Grafana's InfluxDB datasource in Flux mode stores a query as `{"refId", "query",
"datasource"}`; the backend expands the macros `v.timeRangeStart`, `v.timeRangeStop`,
`v.windowPeriod` and `v.defaultBucket` before running it.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

#: The Grafana plugin id of the InfluxDB datasource (Flux is a mode of it, not its own type).
INFLUXDB_TYPE = "influxdb"


class FluxQuery(cogvariants.Dataquery):
    """One Flux query of a panel (the shape Grafana's InfluxDB datasource saves)."""

    ref_id: str
    query: str
    hide: bool | None
    datasource: dashboard.DataSourceRef | None

    def __init__(
        self,
        ref_id: str = "",
        query: str = "",
        hide: bool | None = None,
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query}
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        ds = data.get("datasource")
        return cls(
            ref_id=data.get("refId", ""),
            query=data.get("query", ""),
            hide=data.get("hide"),
            datasource=dashboard.DataSourceRef.from_json(ds) if ds is not None else None,
        )


class FluxQueryBuilder(cogbuilder.Builder[FluxQuery]):
    """Builder in the SDK's style: `FluxQueryBuilder().ref_id("A").query(flux)`."""

    def __init__(self) -> None:
        self._internal = FluxQuery()

    def build(self) -> FluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def query(self, query: str) -> typing.Self:
        self._internal.query = query
        return self

    def hide(self, hide: bool) -> typing.Self:
        self._internal.hide = hide
        return self

    def datasource(self, datasource: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = datasource
        return self


class FluxAnnotationTarget(dashboard.AnnotationTarget):
    """An annotation target carrying a Flux query. The SDK's `AnnotationTarget` only knows
    the built-in Grafana annotation fields; InfluxDB annotations in Flux mode put the query
    in `target.query` (Grafana 10/11)."""

    query: str
    ref_id: str

    def __init__(self, query: str = "", ref_id: str = "Anno") -> None:
        super().__init__()
        self.query = query
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "matchAny": self.match_any,
            "tags": self.tags,
            "type": self.type_val,
            "query": self.query,
            "refId": self.ref_id,
        }


class FluxAnnotationTargetBuilder(cogbuilder.Builder[dashboard.AnnotationTarget]):
    def __init__(self, query: str, ref_id: str = "Anno") -> None:
        self._internal = FluxAnnotationTarget(query=query, ref_id=ref_id)

    def build(self) -> dashboard.AnnotationTarget:
        return self._internal


def register() -> None:
    """Teach the SDK runtime to decode `influxdb` targets as `FluxQuery` (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=INFLUXDB_TYPE, from_json_hook=FluxQuery.from_json)
    )


register()
