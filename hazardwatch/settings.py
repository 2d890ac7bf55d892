"""Settings: one strict, frozen model read from a TOML file and `HW_*` environment variables.

Precedence (highest first): explicit overrides, environment (`HW_MQTT__HOST=...`, nested
keys joined by `__`), the TOML file (`--config`, else `$HW_CONFIG`, else `hazardwatch.toml`
in the working directory if present), defaults. Unknown keys are errors. Secrets are
`SecretStr` and are masked wherever settings are shown; a secret may also be read from a
file named by `<KEY>_FILE` (e.g. `HW_PLATFORM__HMAC_SECRET_FILE`) that only its owner can read.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import (
    SettingsError as _SourceError,
)
from pydantic_settings.sources.utils import parse_env_vars

DEFAULT_CONFIG_NAME = "hazardwatch.toml"
ENV_PREFIX = "HW_"


class SettingsError(Exception):
    """Settings could not be loaded; the message lists every problem, one per line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    enabled: bool = False  # embedded mode can run from the simulator alone
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "hazardwatch-ingest"
    topic_prefix: str = "hw"
    # An int, not Literal[0, 1]: values from the environment arrive as strings.
    qos: int = Field(default=1, ge=0, le=1)
    # Several ingest processes split the load with `$share/<group>/...`; empty = no sharing.
    shared_group: str = ""
    # MQTT 5 session expiry: how long the broker keeps our queue while we are away.
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    keepalive_s: int = Field(default=30, ge=5)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    dead_letter_topic: str = "hw/_deadletter"
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_level(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError(
                "must be a plain topic prefix without wildcards or leading/trailing '/'"
            )
        return v


class KafkaSettings(_Section):
    # Empty = embedded mode (in-process queue instead of Kafka).
    bootstrap_servers: str = ""
    readings_topic: str = "hw.readings"
    alarms_topic: str = "hw.alarms"
    deadletter_topic: str = "hw.deadletter"
    partitions: int = Field(default=4, ge=1)
    app_id: str = "hazardwatch"


class InfluxSettings(_Section):
    # Empty url = write line-protocol files under storage.data_dir/lineprotocol instead.
    url: str = ""
    token: SecretStr | None = None  # InfluxDB 1.8 compatibility API: "user:password"
    org: str = "-"
    bucket: str = "hazardwatch/autogen"
    batch_size: int = Field(default=5000, ge=1)
    flush_interval_ms: int = Field(default=1000, ge=10)
    spill_max_bytes: int = Field(default=1 << 30, ge=1 << 20)


class StorageSettings(_Section):
    data_dir: Path = Path("var")  # SQLite state, outbox, journal, spill, line-protocol files
    # Embedded runner: how often the engine state is committed (one write for every batch
    # since the last); MQTT acks wait for it, and a crash re-processes at most this much.
    commit_interval_ms: int = Field(default=200, ge=1, le=600_000)


class RulesSettings(_Section):
    registry: Path | None = None  # point registry CSV/YAML
    rules_dir: Path | None = None  # the user's rule files; default packs always apply
    standard_pack_versions: dict[str, str] = Field(default_factory=dict)


class PlatformSettings(_Section):
    url: str = ""  # the bureau's 安全风险隐患管理平台 push endpoint
    hmac_secret: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class AliyunSmsSettings(_Section):
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    access_key_id: str = ""
    access_key_secret: SecretStr | None = None
    sign_name: str = ""
    template_code: str = ""
    daily_cap: int = Field(default=50, ge=1)  # per number per template per day (Aliyun's limit)


class TencentSmsSettings(_Section):
    endpoint: str = "https://sms.tencentcloudapi.com/"
    secret_id: str = ""
    secret_key: SecretStr | None = None
    sdk_app_id: str = ""
    sign_name: str = ""
    template_id: str = ""
    # Tencent templates take positional parameters: the notification params in this order.
    template_params: list[str] = Field(default_factory=list)


class WecomSettings(_Section):
    base_url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    # Robot keys by name; routing refers to robots by name, never by key.
    robot_keys: dict[str, SecretStr] = Field(default_factory=dict)
    per_robot_per_minute: int = Field(default=20, ge=1)


class WechatSettings(_Section):
    """WeChat official account (微信公众号) template messages."""

    api_base: str = "https://api.weixin.qq.com"
    app_id: str = ""
    app_secret: SecretStr | None = None
    template_id: str = ""


class WebhookSettings(_Section):
    url: str = ""
    secret: SecretStr | None = None


class ChannelsSettings(_Section):
    aliyun_sms: AliyunSmsSettings = AliyunSmsSettings()
    tencent_sms: TencentSmsSettings = TencentSmsSettings()
    wecom: WecomSettings = WecomSettings()
    webhook: WebhookSettings = WebhookSettings()
    wechat: WechatSettings = WechatSettings()
    routing_file: Path | None = None


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8470"  # base of the links sent in SMS/WeCom
    tokens_file: Path | None = None  # API tokens and their roles
    # Signs the acknowledge/dispose links sent by SMS/WeCom (alerts.auth.LinkSigner); without
    # it links carry no token and the link page is off.
    link_secret: SecretStr | None = None
    link_ttl_s: float = Field(default=24 * 3600.0, gt=0)  # the disposition window (DOMAIN §4)
    # HTTPS for the API (both or neither; see hazardwatch.tls): PEM certificate chain and key,
    # the key file readable only by its owner.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_key_password: SecretStr | None = None


class GrafanaSettings(_Section):
    url: str = ""
    token: SecretStr | None = None


class MetricsSettings(_Section):
    port: int = Field(default=9470, ge=0, le=65535)  # 0 = no metrics endpoint


class ClockSettings(_Section):
    """How the guarded clock weighs the gateways' timestamps as evidence for a step of the
    host clock (hazardwatch/clock.py has the reasons for the defaults)."""

    witness_tolerance_s: float = Field(default=30.0, gt=0)  # "agrees with a clock" within
    witness_gateways: int = Field(default=3, ge=1)  # distinct gateways that must corroborate
    witness_window_s: float = Field(default=60.0, gt=0)  # how long a gateway's vote counts


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file; a syntax error names the file and the line."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is used instead

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with self.path.open("rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {self.path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{self.path}: not valid TOML: {exc}") from None


_toml_path: ContextVar[Path | None] = ContextVar("hazardwatch_toml_path", default=None)
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("hazardwatch_environ", default=None)


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping `load_settings` was given
    instead of `os.environ` (which other threads may be reading: never swap it)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _environ.get()
        if env is None:
            return super()._load_env_vars()
        return parse_env_vars(
            env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mode: Literal["auto", "embedded", "distributed"] = "auto"
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    influx: InfluxSettings = InfluxSettings()
    storage: StorageSettings = StorageSettings()
    rules: RulesSettings = RulesSettings()
    platform: PlatformSettings = PlatformSettings()
    channels: ChannelsSettings = ChannelsSettings()
    api: ApiSettings = ApiSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    clock: ClockSettings = ClockSettings()

    @property
    def effective_mode(self) -> Literal["embedded", "distributed"]:
        if self.mode == "auto":
            return "distributed" if self.kafka.bootstrap_servers else "embedded"
        return self.mode

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _EnvSource(settings_cls),
            _TomlSource(settings_cls, _toml_path.get()),
        )


# Environment variables that are ours but not settings (so they are not "unknown").
_NON_SETTING_ENV = {"HW_CONFIG", "HW_LOCAL_DIR", "HW_JAVA", "HW_INFLUXDB_VERSION"}


def _is_secret_field(path: list[str]) -> bool:
    """True if `path` (lower-case keys) names a SecretStr setting."""
    model: Any = Settings
    for i, key in enumerate(path):
        fields = getattr(model, "model_fields", {})
        if key not in fields:
            return False
        ann = fields[key].annotation
        if i == len(path) - 1:
            return "SecretStr" in str(ann)
        model = ann
    return False


def _secret_files_from_env(environ: dict[str, str]) -> dict[str, str]:
    """`HW_X__Y_FILE=/path` -> `HW_X__Y=<contents>` for secret settings, refusing files
    others can read. (`routing_file` and friends are ordinary settings, not secret files.)"""
    out: dict[str, str] = {}
    for name, path in environ.items():
        if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")):
            continue
        target = name[: -len("_FILE")]
        if not _is_secret_field(target[len(ENV_PREFIX) :].lower().split("__")):
            continue
        p = Path(path)
        try:
            mode = p.stat().st_mode
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read secret file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(
                f"{name}: secret file {path} is readable by group or others "
                f"(mode {stat.filemode(mode)}); expected chmod 600"
            )
        out[target] = p.read_text(encoding="utf-8").strip()
        out[name] = ""  # consumed
    return out


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid settings ({source}): {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        if any(k in loc for k in ("password", "secret", "token", "key")):
            got_s = ""  # never echo a secret back
        lines.append(f"  {loc}: {err['msg']}{got_s}")
    lines.append(
        "  hint: keys are case-insensitive sections of hazardwatch.toml, or HW_<SECTION>__<KEY> "
        "environment variables; `hazardwatch config show` prints the effective settings"
    )
    return "\n".join(lines)


def load_settings(
    config: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate settings. Raises `SettingsError` listing every problem at once."""
    env = dict(os.environ if environ is None else environ)
    path = config
    if path is None and env.get("HW_CONFIG"):
        path = Path(env["HW_CONFIG"])
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = Path(DEFAULT_CONFIG_NAME)
    secret_files = _secret_files_from_env(env)
    env.update(secret_files)
    env = {k: v for k, v in env.items() if not (k in secret_files and secret_files[k] == "")}
    unknown_top = sorted(
        k
        for k in env
        if k.startswith(ENV_PREFIX)
        and k not in _NON_SETTING_ENV
        and not k.startswith("HW_LOCAL_")
        and k[len(ENV_PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    )
    if unknown_top:
        raise SettingsError(
            "unknown HW_* environment variable(s): "
            + ", ".join(unknown_top)
            + f"\n  hint: sections are {', '.join(sorted(Settings.model_fields))}"
        )
    source = f"file {path}" if path else "defaults"
    token = _toml_path.set(path)
    env_token = _environ.set(env)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, source + " + environment")) from None
    except _SourceError as exc:
        # e.g. a dict-valued variable that is not JSON; the value itself is not repeated.
        raise SettingsError(
            f"invalid settings ({source} + environment): {exc}\n"
            "  hint: dict- and list-valued settings in the environment must be JSON, "
            'e.g. HW_CHANNELS__WECOM__ROBOT_KEYS=\'{"duty": "..."}\''
        ) from None
    finally:
        _environ.reset(env_token)
        _toml_path.reset(token)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with every secret replaced by '********' (or null if unset)."""

    def walk(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return "********"
        if isinstance(v, BaseModel):
            return {k: walk(getattr(v, k)) for k in type(v).model_fields}
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    out = walk(settings)
    out["effective_mode"] = settings.effective_mode
    return out
