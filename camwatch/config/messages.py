"""pydantic's validation errors as `field.path: message` lines that a person can act on.

pydantic words its errors for programmers ("Input should be a valid dictionary or instance of
CameraConfig", "List should have at least 1 item after validation, not 0"). Each error type a
camwatch file can produce is said here in plain words: what was expected, what was found, and
for a misspelt key or choice the nearest one that exists. A type not listed falls back to
pydantic's message with its wording rewritten, so no raw pydantic phrasing reaches the user.

A value is quoted through `values.shown` (cut short), and not at all where it may be a secret
(an API key written as a bare number, an Apprise URL given as a mapping): there the message
says only what kind of value it was.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from camwatch.config.environment import join_path
from camwatch.config.values import scrub_url, shown

# Parts of a pydantic location that name a validator or a union member, not a field.
_SCHEMA_PART = re.compile(r"^(function-|tagged-union|lax-or-strict|json-or-python|is-instance)")

# Fields whose values are or may hold credentials: their values are never quoted.
# (`max_tokens`, `daily_tokens` count tokens: they hold none.)
_SECRET_FIELD = re.compile(
    r"auth|token(?!s$)|key|secret|passw|cookie|session|signature|credential|^urls$|^headers$",
    re.IGNORECASE,
)

# What a list of each field holds, for "at least one camera is needed".
_ITEM_NOUN = {"cameras": "camera", "urls": "URL"}

_LIST = "a list (lines starting with '- ', or [a, b])"
_MAPPING = "a mapping (key: value lines)"
_SECTION = "a section of settings (key: value lines)"


def format_loc(loc: Iterable[int | str]) -> str:
    """Given a pydantic error location such as `('rules', 2, 'cooldown')`, return
    `rules[2].cooldown`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # a dict key of the wrong type
            out += "[key]"
        elif part and not _SCHEMA_PART.match(str(part)):
            out = join_path(out, str(part))
    return out or "<root>"


def validation_problems(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Given pydantic's error for validating `root`, return one `path: message` line per
    problem."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        message = describe(error, root)
        # A model-level check names its field in the message ("public_url: required ...").
        field = re.match(r"^([a-z_]+): (.*)$", message)
        if field and error["type"] == "value_error":
            loc.append(field.group(1))
            message = field.group(2)
        problems.append(f"{format_loc(loc)}: {message}")
    return problems


def describe(error: Any, root: type[BaseModel]) -> str:
    """Given one of pydantic's errors (a dict from `ValidationError.errors()`) for validating
    `root`, return its message in plain words, without the field path."""
    kind: str = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = _got(value, loc)
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key(loc, root)
    if kind in {"value_error", "assertion_error"}:
        message = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind in {"literal_error", "enum"}:
        return _choice(str(ctx.get("expected", "")), value, got)
    if kind == "too_short":
        return _too_short(loc, int(ctx.get("min_length", 1)), ctx.get("actual_length"))
    if kind == "too_long":
        maximum, actual = ctx.get("max_length"), ctx.get("actual_length")
        return f"at most {maximum} entries are allowed, got {actual}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"expected at least {ctx.get('min_length')} characters, got {_length(value)}"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters, got {_length(value)}"
    if kind == "string_type":
        hint = "; quote it to make it text" if _is_plain_scalar(value) else ""
        return f"expected text, got {got}{hint}"
    if kind == "invalid_key":
        return f"a key must be text, got {got}; quote it"
    if kind in _SIMPLE:
        return f"expected {_SIMPLE[kind]}, got {got}"
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return f"expected {word} {ctx.get(key)}, got {got}"
    if kind.startswith("url_"):
        return _url(kind, ctx, value)
    return _rewritten(str(error["msg"]), got)


# Error types that say only which kind of value was expected.
_SIMPLE = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_parsing_size": "a whole number of a sensible size",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "dict_type": _MAPPING,
    "mapping_type": _MAPPING,
    "list_type": _LIST,
    "tuple_type": _LIST,
    "set_type": _LIST,
    "frozen_set_type": _LIST,
    "iterable_type": _LIST,
    "model_type": _SECTION,
    "model_attributes_type": _SECTION,
    "dataclass_type": _SECTION,
    "path_type": "a path",
    "string_unicode": "valid Unicode text",
    "string_sub_type": "text",
    "bytes_type": "text",
    "none_required": "nothing (leave it empty)",
}

_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
    "multiple_of": ("a multiple of", "multiple_of"),
}


def _got(value: Any, loc: tuple[int | str, ...]) -> str:
    """Return how a message names the value it got: quoted (cut short) unless the field may
    hold a secret; a list or mapping by its kind, since its repr says little and may be long."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "a mapping"
    if any(isinstance(part, str) and _SECRET_FIELD.search(part) for part in loc):
        return "a number" if isinstance(value, int | float) else "a value not shown (a secret?)"
    return shown(value)


def _is_plain_scalar(value: Any) -> bool:
    # YAML reads `name: 123`, `name: yes` and `name: 1.0` as a number or true/false.
    return isinstance(value, int | float)


def _length(value: Any) -> str:
    return f"{len(value)}" if isinstance(value, str) else "none"


def _choice(expected: str, value: Any, got: str) -> str:
    """Return `expected 'a', 'b' or 'c', got 'x'`, with the nearest choice if one is close."""
    message = f"expected {expected}, got {got}"
    options = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    if isinstance(value, str) and options:
        near = difflib.get_close_matches(value.strip().lower(), options, n=1, cutoff=0.6)
        if near:
            message += f"; did you mean {near[0]!r}?"
    return message


def _too_short(loc: tuple[int | str, ...], minimum: int, actual: Any) -> str:
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    noun = _ITEM_NOUN.get(field, "entry")
    found = "an empty list" if actual in (0, None) else f"{actual}"
    if minimum == 1:
        return f"at least one {noun} is needed, got {found}"
    return f"at least {minimum} entries are needed, got {found}"


def _url(kind: str, ctx: dict[str, Any], value: Any) -> str:
    """Return the message for a URL error, quoting at most `scheme://host:port` of it."""
    safe = scrub_url(value) if isinstance(value, str) else ""
    got = repr(safe) if safe else ("one that cannot be shown" if isinstance(value, str) else "")
    got = got or _got(value, ())
    if kind == "url_scheme" and ctx.get("expected_schemes"):
        return f"expected a URL starting with {ctx['expected_schemes']}, got {got}"
    if kind == "url_too_long":
        return f"expected a URL of at most {ctx.get('max_length')} characters"
    return f"expected a URL such as https://host.example/path, got {got}"


def _rewritten(message: str, got: str) -> str:
    """Return pydantic's message for an error type not listed above, in camwatch's wording:
    "Input should be X" becomes "expected X, got ..."."""
    text = re.sub(r"^Input should be ", "expected ", message)
    text = re.sub(r"^Input should ", "expected to ", text)
    text = re.sub(r"^Input is ", "", text)
    text = re.sub(r"^Value error, |^Assertion failed, ", "", text)
    text = re.sub(r"\s*after validation", "", text)
    text = re.sub(r"\bpydantic\b", "", text, flags=re.IGNORECASE).strip()
    if not text.startswith("expected"):
        text = f"not valid: {text[:1].lower()}{text[1:]}"
    return text if ", got " in text else f"{text}, got {got}"


# -- unknown keys -------------------------------------------------------------------------------


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """Return the message for a key no model has at `loc`: the nearest key at that place, else
    where a key of that name (or a near one) lives, else a plain "unknown key (misspelt?)"."""
    key = loc[-1] if loc else ""
    if not isinstance(key, str):
        return "unknown key (misspelt?)"
    model = _model_at(root, loc[:-1])
    if model is not None:
        near = difflib.get_close_matches(key.lower(), list(model.model_fields), n=1, cutoff=0.75)
        if near:
            return f"unknown key; did you mean {near[0]!r}?"
    places = dict(_fields_by_place(root))
    here = _place_name(loc[:-1])
    elsewhere = [place for place, fields in places.items() if key in fields and place != here]
    if elsewhere:
        return f"unknown key here; {key!r} is a setting of {_joined(elsewhere)}"
    for place, fields in places.items():
        if place == here:
            continue
        near = difflib.get_close_matches(key.lower(), list(fields), n=1, cutoff=0.8)
        if near:
            return f"unknown key; did you mean {near[0]!r} (a setting of {place})?"
    return "unknown key (misspelt?)"


def _model_at(root: type[BaseModel], loc: Iterable[int | str]) -> type[BaseModel] | None:
    """Return the model that validates the mapping at `loc` (list indexes skipped), or None if
    `loc` leads out of the models (into a dict of headers, say)."""
    model = root
    for part in loc:
        if isinstance(part, int) or _SCHEMA_PART.match(part):
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """Return the model inside a field's type (`X`, `list[X]`, `X | None`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple) or (
        typing.get_origin(annotation) is typing.Annotated
    ):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _fields_by_place(
    model: type[BaseModel], place: str = "the top level", seen: frozenset[type] = frozenset()
) -> Iterator[tuple[str, list[str]]]:
    """Yield (place, field names) for `model` and every model inside it: ("caption.retry",
    [...]), ("cameras[]", [...])."""
    yield place, list(model.model_fields)
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        if inner is None or inner in seen:
            continue
        is_list = typing.get_origin(field.annotation) is list
        child = name if place == "the top level" else f"{place}.{name}"
        yield from _fields_by_place(inner, child + ("[]" if is_list else ""), seen | {model})


def _place_name(loc: Iterable[int | str]) -> str:
    """Return the place `_fields_by_place` calls the mapping at `loc`: `cameras[0]` is
    `cameras[]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += "[]"
        elif not _SCHEMA_PART.match(part):
            out = f"{out}.{part}" if out else part
    return out or "the top level"


def _joined(places: list[str]) -> str:
    shown_places = places[:3]
    if len(shown_places) == 1:
        return shown_places[0]
    return f"{', '.join(shown_places[:-1])} and {shown_places[-1]}"
