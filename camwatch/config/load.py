"""From a YAML file to a validated Config: the steps run in order, problems gathered per step.

Also here: the checks that span sections, pydantic's errors turned into `field.path: message`
lines, and the API key, which may come from outside the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camwatch.config.environment import interpolate, join_path
from camwatch.config.models import CaptionConfig, Config
from camwatch.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/camwatch/config.yaml"


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
            out = join_path(out, str(part))
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
