"""The settings as pydantic models: one frozen model per section, unknown keys forbidden.

Each model checks what one section can check alone (ranges, formats, a field that another field
of the same section requires); what needs several sections at once (names, references, paths)
is checked after validation, in load.py.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camwatch.config.listen import Listen, parse_listen
from camwatch.config.providers import (
    MEMORIES_BASE_URL,
    MEMORIES_ENDPOINT,
    check_model,
    provider_problem,
)
from camwatch.config.values import (
    Day,
    Duration,
    HttpUrl,
    SafePath,
    TimeRange,
    endpoint_in_base_url,
)
from camwatch.mqtt.address import Broker, parse_broker
from camwatch.mqtt.topics import prefix_problem

_MIN_TOKEN_LENGTH = 16  # as webhook secrets (load.py's MIN_SECRET_LENGTH)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    attempts: int = Field(6, ge=1, le=100)
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 60.0
    retry_after_max: Duration = 300.0


class DedupeConfig(_Model):
    """Near-duplicate skipping (similar.py): within `window` of an image captioned on the same
    camera, within `max_distance` bits of its hash, and no part of the picture changed by more
    than `max_change` levels."""

    window: Duration = 30.0
    max_distance: int = Field(5, ge=0, le=64)
    max_change: int = Field(16, ge=0, le=255)


Provider = Literal["memories", "openai"]


class ProviderConfig(_Model):
    """`caption.fallback`: a provider block of its own (config/providers.py says which keys each
    provider takes). Nothing is inherited from `caption`: not the address, not the key."""

    provider: Provider
    base_url: HttpUrl | None = None  # memories: https://security.memories.ai
    endpoint: str | None = None  # memories: /v1/understand/uploadImg
    api_key: SecretStr | None = None
    api_key_file: SafePath | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: Duration = 30.0
    retry: RetryConfig = RetryConfig()
    pause_probe: Duration = 600.0

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value is not None else None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value if value.startswith("/") else "/" + value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return check_model(value)

    @model_validator(mode="after")
    def _provider_keys(self) -> ProviderConfig:
        given = set(self.model_fields_set)
        problem = provider_problem(self.provider, given, self.base_url, self.model)
        if problem is None and self.provider == "memories" and self.base_url is not None:
            problem = endpoint_in_base_url(self.base_url, self.endpoint or MEMORIES_ENDPOINT)
        if problem is not None:
            raise ValueError(problem)
        return self


class CaptionConfig(_Model):
    base_url: HttpUrl = MEMORIES_BASE_URL
    endpoint: str = MEMORIES_ENDPOINT
    api_key: SecretStr | None = None
    api_key_file: SafePath | None = None
    user_prompt: str = "What's happening in this picture?"
    system_prompt: str = "You are an image understanding system."
    thinking: bool = False
    upload: Literal["file", "url"] = "file"
    public_url: str | None = None
    timeout: Duration = 30.0
    concurrency: int = Field(4, ge=1, le=256)
    retry: RetryConfig = RetryConfig()
    max_image_bytes: int = Field(20_000_000, ge=1)
    pause_probe: Duration = 600.0
    # Costs and privacy (all optional; without them the file's bytes go as they are).
    dedupe: DedupeConfig | None = None
    strip_metadata: bool = False
    upload_max_side: int | None = Field(None, ge=64, le=20_000)
    jpeg_quality: int = Field(85, ge=1, le=95)  # above 95 Pillow's JPEGs only grow
    max_per_minute: int | None = Field(None, ge=1, le=100_000)
    daily_tokens: int | None = Field(None, ge=1)
    # Who captions (config/providers.py): memories.ai, or an OpenAI-compatible server.
    provider: Provider = "memories"
    model: str | None = None  # openai: required
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)  # openai: default 300
    temperature: float | None = Field(None, ge=0, le=2)  # openai: default 0
    fallback: ProviderConfig | None = None  # while this provider cannot caption

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @model_validator(mode="after")
    def _url_mode(self) -> CaptionConfig:
        if self.upload == "url" and not self.public_url:
            raise ValueError("public_url: required when upload is 'url'")
        return self

    @model_validator(mode="after")
    def _base_url_without_endpoint(self) -> CaptionConfig:
        # Refused at load, so that run and a reload refuse it too: every request would 404.
        if self.provider != "memories":
            return self  # _provider_keys checks an openai base_url
        problem = endpoint_in_base_url(self.base_url, self.endpoint)
        if problem is not None:
            raise ValueError(problem)
        return self

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return check_model(value)

    @model_validator(mode="after")
    def _provider_keys(self) -> CaptionConfig:
        given = set(self.model_fields_set)
        problem = provider_problem(self.provider, given, self.base_url, self.model)
        if problem is None and self.fallback is not None:
            fallback = self.fallback
            same = (fallback.provider, fallback.base_url or MEMORIES_BASE_URL)
            if same == (self.provider, self.base_url) and fallback.model == self.model:
                problem = (
                    "fallback: the same provider, address and model as caption itself; it would"
                    " be down whenever the primary is (give another server or model)"
                )
        if problem is not None:
            raise ValueError(problem)
        return self


class CameraConfig(_Model):
    name: str = Field(min_length=1)
    path: SafePath
    recursive: bool = True
    user_prompt: str | None = None
    system_prompt: str | None = None
    thinking: bool | None = None
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval: Duration = 2.0
    expect_every: Duration | None = None

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path) -> Path:
        # Resolved once, here: watchdog does not follow a symlinked folder (IN_DONT_FOLLOW), and
        # "nothing outside the camera's path" is judged against the resolved path. A folder that
        # is missing now (an unmounted share, a USB disk not yet there) is not an error: the
        # daemon starts anyway and looks for it again (`camera_unavailable`).
        try:
            resolved = Path(os.path.realpath(os.path.expanduser(value)))
            if resolved.exists() and not resolved.is_dir():
                raise ValueError(f"not a directory: {str(value)!r}")
        except PermissionError:
            # A folder above it that this user cannot enter: like a missing folder, the daemon
            # waits for it; check-config says which folder and how to grant access.
            return resolved
        except OSError as exc:
            # exists() lets EACCES, ENAMETOOLONG (a long symlink target), EIO through: a
            # problem with this field, not a traceback.
            raise ValueError(f"cannot check {str(value)!r}: {exc.strerror or exc}") from None
        return resolved

    @field_validator("poll_interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.05:
            raise ValueError(f"expected at least 50ms, got {value:g}s")
        return value

    @field_validator("expect_every")
    @classmethod
    def _expect(cls, value: float | None) -> float | None:
        if value is not None and value < 1.0:
            raise ValueError(f"expected at least 1s, got {value:g}s")
        return value


# Home Assistant's binary_sensor device classes (its BinarySensorDeviceClass), for
# `rules[].ha_device_class`: how the rule's sensor is shown there.
HaDeviceClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
]  # fmt: skip


class RuleConfig(_Model):
    name: str = Field(min_length=1)
    any: list[str] = []
    all: list[str] = []
    none: list[str] = []
    regex: str | None = None
    cameras: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown: Duration = 0.0
    webhooks: list[str] | None = None
    notify: list[str] | None = None
    active: list[TimeRange] = []
    days: list[Day] = []
    skip_if: list[str] = []
    ha_device_class: HaDeviceClass | None = None  # with mqtt discovery
    ask: str | None = None  # a yes/no question put to the model (rules/answers.py)

    @field_validator("ask")
    @classmethod
    def _ask(cls, value: str | None) -> str | None:
        from camwatch.rules.answers import question_problem

        if value is None:
            return None
        question = " ".join(value.split())  # one line in the prompt
        problem = question_problem(question)
        if problem is not None:
            raise ValueError(problem)
        return question

    @field_validator("any", "all", "none", "skip_if")
    @classmethod
    def _phrases(cls, value: list[str]) -> list[str]:
        for phrase in value:
            if not re.search(r"\w", phrase):
                raise ValueError(f"a phrase needs at least one word, got {phrase!r}")
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            # Checked by the engine that runs it (RE2, not re: no backtracking, so no caption
            # can freeze the daemon), so that a pattern RE2 has no syntax for fails at load and
            # on reload. Imported here because camwatch.rules imports this module.
            from camwatch.rules.regex import regex_problem

            problem = regex_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _has_condition(self) -> RuleConfig:
        if not (self.any or self.all or self.regex or self.ask):
            raise ValueError("a rule needs at least one of any, all, regex or ask")
        return self


class MatchingConfig(_Model):
    negations: list[str] = []
    hedges: list[str] = []


class WebhookConfig(_Model):
    name: str = Field(min_length=1)
    url: HttpUrl
    secret: SecretStr | None = None
    headers: dict[str, str] = {}
    timeout: Duration = 10.0


class NotifyConfig(_Model):
    name: str = Field(min_length=1)
    urls: list[SecretStr] = Field(min_length=1)
    attach_image: bool = False
    title: str = "{severity}: {rule} on {camera}"
    body: str = "{caption}"


class DeliveryConfig(_Model):
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 300.0
    max_age: Duration = 7 * 86400.0


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] | None = None
    file: SafePath | None = None  # with --daemon: where logs go (default state_dir/camwatch.log)
    syslog: bool = False  # with --daemon: send logs to syslog instead of a file

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class HttpConfig(_Model):
    """The HTTP listener: /metrics, /healthz and the timeline."""

    listen: str = "127.0.0.1:9108"
    token: SecretStr | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> str:
        return str(parse_listen(value))

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # Never quote the token: the message ends up in logs.
        if value is not None:
            token = value.get_secret_value()
            if not token.strip():
                raise ValueError("empty; remove the key for no token (loopback only)")
            if not token.isascii() or not token.isprintable() or " " in token:
                raise ValueError("only printable ASCII without spaces (it travels in a header)")
            if len(token) < _MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"shorter than {_MIN_TOKEN_LENGTH} characters; anyone who can reach the"
                    " listener could guess it (e.g. openssl rand -hex 32)"
                )
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if self.token is None and not self.address.loopback:
            raise ValueError(
                f"token: required when listen ({self.listen}) is not a loopback address:"
                " whoever can reach it could read every caption (e.g. token:"
                " ${CAMWATCH_HTTP_TOKEN}, made with openssl rand -hex 32)"
            )
        return self

    @property
    def address(self) -> Listen:
        """Return where to listen, parsed."""
        return parse_listen(self.listen)


class MqttConfig(_Model):
    """The MQTT broker (camwatch/mqtt/): states, captions, snapshots and alerts on topics under
    `topic_prefix`, and Home Assistant discovery under `discovery_prefix`."""

    url: SecretStr  # user and password inside: never shown (Broker.shown is)
    topic_prefix: str = "camwatch"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    hold: Duration = 30.0
    keepalive: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        parse_broker(value.get_secret_value())  # a ValueError that never quotes credentials
        return value

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = prefix_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("hold")
    @classmethod
    def _hold(cls, value: float) -> float:
        if value < 1.0:
            raise ValueError(f"expected at least 1s (a shorter ON may be missed), got {value:g}s")
        return value

    @field_validator("keepalive")
    @classmethod
    def _keepalive(cls, value: float) -> float:
        # Whole seconds on the wire (a 16-bit field); a fraction is rounded up.
        if not 1.0 <= value <= 65535.0:
            raise ValueError(f"expected between 1s and 65535s, got {value:g}s")
        return value

    @property
    def broker(self) -> Broker:
        """Return the broker's address and credentials, parsed from `url`."""
        return parse_broker(self.url.get_secret_value())


class Config(_Model):
    caption: CaptionConfig = CaptionConfig()
    cameras: list[CameraConfig] = Field(min_length=1)
    debounce: Duration = 2.0
    complete_timeout: Duration = 600.0
    after: Literal["keep", "delete", "move"] = "keep"
    archive_dir: SafePath | None = None
    state_dir: SafePath = Path("/var/lib/camwatch")
    retention: Duration = 30 * 86400.0
    timezone: str | None = None
    matching: MatchingConfig = MatchingConfig()
    rules: list[RuleConfig] = []
    webhooks: list[WebhookConfig] = []
    notify: list[NotifyConfig] = []
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()
    http: HttpConfig | None = None  # without it, no listener
    mqtt: MqttConfig | None = None  # without it, no broker

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def camera(self, name: str) -> CameraConfig | None:
        """Return the camera called `name`, or None."""
        return next((c for c in self.cameras if c.name == name), None)
