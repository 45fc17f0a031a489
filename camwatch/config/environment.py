"""`${VAR}` and `${VAR:-default}` in every string of the parsed YAML, before validation.

Interpolation runs on the raw tree, not on the models, so that a variable can stand for any
value (a duration, a URL, a secret) and pydantic then checks what it became. Every unset
variable is collected, with the field it is in, before giving up.
"""

from __future__ import annotations

import os
import re
from typing import Any

from camwatch.errors import ConfigError

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(value: Any, environ: dict[str, str] | os._Environ[str], path: str = "") -> Any:
    """Given a parsed YAML tree, return it with `${NAME}` and `${NAME:-default}` replaced in every
    string. Raise ConfigError naming each unset variable and the field it is in."""
    problems: list[str] = []
    result = _interpolate(value, environ, path, problems)
    if problems:
        raise ConfigError(problems)
    return result


def written_text(value: str) -> str:
    """Given a string from the file, return what of it is written in the file itself:
    `${NAME}` removed, `${NAME:-x}` replaced by `x` (a default is written in the file)."""
    return _ENV_RE.sub(lambda m: m.group(2) or "", value)


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
            k: _interpolate(v, environ, join_path(path, str(k)), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


_PLAIN_KEY = re.compile(r"[\w-]+")


# Shared with load.format_loc: an unset variable and a validation error name a field alike.
def join_path(path: str, key: str) -> str:
    """Return the path of `key` inside `path`: `caption.retry`. A key that is not a plain word
    (a newline, an escape sequence, a colon, a space, nothing) is quoted, `<root>['a\\nb']`, so
    that a problem stays one line starting with its field path and prints no control
    characters to a terminal."""
    if not (_PLAIN_KEY.fullmatch(key) and key.isprintable()):
        return f"{path or '<root>'}[{key!r}]"
    return f"{path}.{key}" if path else key
