"""YAML file -> validated, frozen settings; every problem reported with its field path.

Loading happens in three steps, each collecting every problem it finds before giving up, so that
an operator fixes a file in one pass: parse the YAML (file:line:column on a syntax error),
interpolate `${VAR}` / `${VAR:-default}` in every string, then validate with pydantic
(`extra="forbid"`, so a misspelt key is an error and not a silently ignored setting).
"""

from __future__ import annotations

import math
import os
import re
import zoneinfo
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from camwatch.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/camwatch/config.yaml"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Given a number of seconds or a string such as `500ms`, `1.5s`, `5m`, `2h`, `7d`, return
    seconds. Raise ValueError with the offending value otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration, got {value!r} (negative)")
        if not math.isfinite(value):  # YAML's .nan and .inf
            raise ValueError(f"expected a duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"expected a duration, got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(value: Any, environ: dict[str, str] | os._Environ[str], path: str = "") -> Any:
    """Given a parsed YAML tree, return it with `${NAME}` and `${NAME:-default}` replaced in every
    string. Raise ConfigError naming each unset variable and the field it is in."""
    problems: list[str] = []
    result = _interpolate(value, environ, path, problems)
    if problems:
        raise ConfigError(problems)
    return result


def _interpolate(value: Any, environ: Any, path: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and (environ[name] != "" or default is None):
                return str(environ[name])
            if default is not None:
                return default
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_RE.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, environ, _join(path, str(k)), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    attempts: int = Field(6, ge=1, le=100)
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 60.0
    retry_after_max: Duration = 300.0


class CaptionConfig(_Model):
    base_url: str = "https://security.memories.ai"
    endpoint: str = "/v1/understand/uploadImg"
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
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


class CameraConfig(_Model):
    name: str = Field(min_length=1)
    path: Path
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
        resolved = Path(os.path.realpath(os.path.expanduser(value)))
        if resolved.exists() and not resolved.is_dir():
            raise ValueError(f"not a directory: {str(value)!r}")
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


# Monday first, as datetime.weekday() counts: the rules' schedules index it by weekday. It lives
# here, not in camwatch.rules.schedule, because that package imports this module.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_time_range(value: Any) -> tuple[int, int]:
    """Given `"22:00-06:00"`, return minutes since midnight `(1320, 360)`; a range may cross
    midnight. Raise ValueError otherwise."""
    if isinstance(value, list | tuple) and len(value) == 2:
        # The parsed form, minutes since midnight (what a re-validated Config holds).
        if all(type(v) is int and 0 <= v <= 1440 for v in value):
            return value[0], value[1]
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    match = _RANGE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    return h1 * 60 + m1, h2 * 60 + m2


def parse_day(value: Any) -> str:
    """Given a day name (`mon`, `Monday`, ...), return its three-letter lowercase form."""
    if isinstance(value, str) and value.strip()[:3].lower() in DAYS:
        full = value.strip().lower()
        names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        if len(full) == 3 or full in names:
            return full[:3]
    raise ValueError(f"expected a day such as 'mon', got {value!r}")


TimeRange = Annotated[tuple[int, int], BeforeValidator(parse_time_range)]
Day = Annotated[str, BeforeValidator(parse_day)]


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
            try:
                re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_condition(self) -> RuleConfig:
        if not (self.any or self.all or self.regex):
            raise ValueError("a rule needs at least one of any, all or regex")
        return self


class MatchingConfig(_Model):
    negations: list[str] = []
    hedges: list[str] = []


class WebhookConfig(_Model):
    name: str = Field(min_length=1)
    url: str
    secret: SecretStr | None = None
    headers: dict[str, str] = {}
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value


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
    file: Path | None = None  # with --daemon: where logs go (default state_dir/camwatch.log)
    syslog: bool = False  # with --daemon: send logs to syslog instead of a file

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Config(_Model):
    caption: CaptionConfig = CaptionConfig()
    cameras: list[CameraConfig] = Field(min_length=1)
    debounce: Duration = 2.0
    complete_timeout: Duration = 600.0
    after: Literal["keep", "delete", "move"] = "keep"
    archive_dir: Path | None = None
    state_dir: Path = Path("/var/lib/camwatch")
    retention: Duration = 30 * 86400.0
    timezone: str | None = None
    matching: MatchingConfig = MatchingConfig()
    rules: list[RuleConfig] = []
    webhooks: list[WebhookConfig] = []
    notify: list[NotifyConfig] = []
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()

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


def _cross_checks(config: Config) -> list[str]:
    """Return the problems that only show across sections: names, references, paths."""
    problems: list[str] = []
    for section, items in (
        ("cameras", config.cameras),
        ("rules", config.rules),
        ("webhooks", config.webhooks),
        ("notify", config.notify),
    ):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(f"{section}[{i}].name: duplicate name {item.name!r}")
            seen.add(item.name)
    cameras = {c.name for c in config.cameras}
    webhooks = {w.name for w in config.webhooks}
    notifies = {n.name for n in config.notify}
    for i, rule in enumerate(config.rules):
        for key, known, what in (
            ("cameras", cameras, "camera"),
            ("webhooks", webhooks, "webhook"),
            ("notify", notifies, "notify target"),
        ):
            for j, name in enumerate(getattr(rule, key) or []):
                if name not in known:
                    problems.append(f"rules[{i}].{key}[{j}]: unknown {what} {name!r}")
    for i, cam in enumerate(config.cameras):
        for j, other in enumerate(config.cameras[:i]):
            if cam.path == other.path or other.path in cam.path.parents:
                problems.append(
                    f"cameras[{i}].path: inside cameras[{j}].path ({str(other.path)!r});"
                    " a file would belong to two cameras"
                )
            elif cam.path in other.path.parents:
                problems.append(
                    f"cameras[{j}].path: inside cameras[{i}].path ({str(cam.path)!r});"
                    " a file would belong to two cameras"
                )
    if config.after == "move":
        if config.archive_dir is None:
            problems.append("archive_dir: required when after is 'move'")
        else:
            archive = Path(os.path.realpath(config.archive_dir))
            for i, cam in enumerate(config.cameras):
                if archive == cam.path or cam.path in archive.parents:
                    problems.append(
                        f"archive_dir: inside cameras[{i}].path; moved files would be seen again"
                    )
    return problems


def format_loc(loc: Iterable[int | str]) -> str:
    """Given a pydantic error location such as `('rules', 2, 'cooldown')`, return
    `rules[2].cooldown`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not str(part).startswith(("function-", "tagged-union")):
            out = _join(out, str(part))
    return out or "<root>"


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (misspelt?)"
    if kind == "missing":
        return "required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in {"literal_error", "enum"}:
        return f"{message}, got {error.get('input')!r}"
    return message


def validation_problems(exc: ValidationError) -> list[str]:
    """Given pydantic's error, return one `path: message` line per problem."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        message = _describe(error)
        # A model-level check names its field in the message ("public_url: required ...").
        field = re.match(r"^([a-z_]+): (.*)$", message)
        if field and error["type"] == "value_error":
            loc.append(field.group(1))
            message = field.group(2)
        problems.append(f"{format_loc(loc)}: {message}")
    return problems


def parse_config(data: Any, environ: dict[str, str] | os._Environ[str] | None = None) -> Config:
    """Given a parsed YAML tree, return the validated Config. Raise ConfigError otherwise."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping of settings"])
    data = interpolate(data, os.environ if environ is None else environ)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc)) from None
    problems = _cross_checks(config)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    """Given a YAML file, return the validated Config. Raise ConfigError, naming the file and
    line:column for a YAML syntax error and the field path for every other problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    return parse_config(data, environ)


def resolve_api_key(caption: CaptionConfig, environ: Any = None) -> str:
    """Return the API key from `api_key`, `api_key_file`, or `$CREDENTIALS_DIRECTORY/api_key`
    (systemd's LoadCredential=). Raise ConfigError if there is none."""
    environ = os.environ if environ is None else environ
    if caption.api_key is not None and caption.api_key.get_secret_value().strip():
        return caption.api_key.get_secret_value().strip()
    candidates: list[tuple[str, Path]] = []
    if caption.api_key_file is not None:
        candidates.append(("caption.api_key_file", caption.api_key_file))
    elif environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(
            ("caption.api_key_file", Path(environ["CREDENTIALS_DIRECTORY"]) / "api_key")
        )
    for field, path in candidates:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"{field}: cannot read {str(path)!r}: {exc.strerror}"]) from None
        if not key:
            raise ConfigError([f"{field}: {str(path)!r} is empty"])
        return key
    raise ConfigError(
        [
            "caption.api_key: no API key: set caption.api_key (e.g. ${CAMWATCH_API_KEY}),"
            " caption.api_key_file, or a systemd credential named api_key"
        ]
    )
