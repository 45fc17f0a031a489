"""Properties of the configuration loader, on generated input: whatever a file or a parsed tree
holds, loading ends in a Config or a ConfigError whose every line starts with a field path or
the file's name; durations parse to finite seconds or raise ValueError, and round-trip.

Kept fast (a few seconds): a few hundred examples per property, no deadline (a loaded CI
machine is slow, not wrong).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwatch.config import Config, load_config, parse_config, parse_duration
from camwatch.config.values import MAX_DURATION
from camwatch.errors import ConfigError

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ENVIRON = {"X": "value", "EMPTY": "", "SECRET": "0123456789abcdef0123"}

# A field path as problems name them: `<root>`, a key, `[index]`, then `.key`, `[index]` or
# `['quoted key']`; then ": " and the message.
_PATH = r"(<root>|[\w-]+|\[\d+\]|\['.*?'\])(\.[\w-]+|\[\d+\]|\[key\]|\[(['\"]).*?\3\])*"


# pydantic's own wording: a person reads what was expected and what was found instead.
RAW_PYDANTIC = re.compile(
    r"Input should|after validation|pydantic|type=|errors\.pydantic\.dev|Field required"
    r"|Extra inputs|Value error,",
    re.IGNORECASE,
)


def without_quoted(problem: str) -> str:
    """Return a problem without the values it quotes: a value may say anything."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", problem)


def check_problems(exc: ConfigError, file: Path | None = None) -> None:
    """Every problem is one line that starts with a field path or `file` (then `:line:col`),
    in camwatch's words, not pydantic's."""
    assert exc.problems, "a ConfigError with no problem"
    for problem in exc.problems:
        assert "\n" not in problem and "\r" not in problem, problem
        assert not RAW_PYDANTIC.search(without_quoted(problem)), problem
        named_file = file is not None and problem.startswith(f"{file}:")
        assert named_file or re.match(_PATH + ": ", problem), problem


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two camera folders, shared by every example (making one per example
    would be most of the time spent)."""
    path = tmp_path_factory.mktemp("props")
    (path / "front").mkdir()
    (path / "back").mkdir()
    return path


def base(root: Path) -> dict[str, Any]:
    """Return a valid configuration touching every section."""
    return {
        "caption": {
            "base_url": "https://api.example.com",
            "api_key": "${X}",
            "timeout": "30s",
            "retry": {"attempts": 3, "backoff_initial": "1s"},
        },
        "cameras": [
            {"name": "front", "path": str(root / "front"), "poll_interval": "2s"},
            {"name": "back", "path": str(root / "back"), "expect_every": "1h"},
        ],
        "debounce": "2s",
        "after": "keep",
        "state_dir": str(root / "state"),
        "timezone": "UTC",
        "rules": [
            {
                "name": "r",
                "any": ["person"],
                "cameras": ["front"],
                "cooldown": "5m",
                "active": ["22:00-06:00"],
                "days": ["mon"],
                "webhooks": ["ops"],
            }
        ],
        "webhooks": [
            {"name": "ops", "url": "https://h.example/x", "secret": "${SECRET}", "headers": {}}
        ],
        "notify": [{"name": "n", "urls": ["json://h.example/x"]}],
        "delivery": {"max_age": "7d"},
        "log": {"level": "info"},
    }


# Values that have broken loaders before: huge or odd numbers, lone surrogates, NUL bytes,
# 256-byte path components, variables, URLs with credentials, odd keys.
_ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\ud800",
        "a\x00b",
        "/" + "a" * 256,
        "/tmp/" + "b" * 300 + "/x",
        "${X}",
        "${UNSET}",
        "${EMPTY:-}",
        "change-me",
        "https://u:p@169.254.169.254/x?t=1",
        "http://[::1",
        "ftp://x",
        "1" * 400 + "s",
        "5m",
        "-1s",
        "22:00-06:00",
        "25:99-1:1",
        "~nobody/x",
        "fall(en",
        "(" * 3000 + "x" + ")" * 3000,
        "a{99999999999}",
        "whsec_AAAA",
        "\x1b[31m",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    _ODD_STRINGS,
)
_KEYS = st.one_of(
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    st.sampled_from(["name", "path", "url", "secret", "any", "cameras", "a\nb", "", "x: y"]),
)
VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)
    ),
    max_leaves=12,
)


def _places(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every dict key and list item in `tree`."""
    out: list[tuple[Any, ...]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.append((*path, key))
            out += _places(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.append((*path, i))
            out += _places(value, (*path, i))
    return out


@st.composite
def changed_configs(draw: st.DrawFn, root: Path) -> dict[str, Any]:
    """A valid base configuration with one to three places replaced by arbitrary values, or
    new keys added to one of its mappings."""
    data = base(root)
    for _ in range(draw(st.integers(1, 3))):
        places = _places(data)
        place = draw(st.sampled_from(places))
        parent: Any = data
        for part in place[:-1]:
            parent = parent[part]
        if draw(st.booleans()) or not isinstance(parent, dict):
            parent[place[-1]] = draw(VALUES)
        else:
            parent[draw(_KEYS)] = draw(VALUES)
    return data


@FAST
@given(data=st.data())
def test_any_tree_gives_a_config_or_a_config_error(root: Path, data: st.DataObject) -> None:
    tree = data.draw(changed_configs(root))
    try:
        config = parse_config(copy.deepcopy(tree), ENVIRON)
    except ConfigError as exc:
        check_problems(exc)
    else:
        assert isinstance(config, Config)


def test_the_base_configuration_is_valid(root: Path) -> None:
    parse_config(base(root), ENVIRON)


# YAML fragments, joined at random: most joins are invalid YAML, some valid but odd.
_FRAGMENTS = st.sampled_from(
    [
        "\n",
        "  ",
        "- ",
        ": ",
        "cameras:",
        "name: a",
        "path: /tmp",
        "debounce: ",
        "1" + "0" * 400,
        "&a ",
        "*a",
        "<<: *a",
        "[",
        "]",
        "{",
        "}",
        ",",
        "? ",
        "'",
        '"',
        '"\\ud800"',
        '"\\0"',
        "!!timestamp x",
        "!!binary zz",
        "!!float x",
        "!!python/object:os.system x",
        "!!set {a: 1}",
        "2020-13-45",
        ".inf",
        ".nan",
        "${X}",
        "#",
        "---",
        "%YAML 1.1",
        "\t",
        "\x00",
        "\ufeff",
        "é",
    ]
)
YAML_TEXT = st.one_of(
    st.lists(_FRAGMENTS, max_size=30).map("".join),
    st.text(max_size=200),
    VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
)


@FAST
@given(text=YAML_TEXT)
def test_any_yaml_text_gives_a_config_or_a_config_error(root: Path, text: str) -> None:
    path = root / "generated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path, ENVIRON)
    except ConfigError as exc:
        check_problems(exc, path)


@FAST
@given(blob=st.binary(max_size=200))
def test_any_bytes_give_a_config_or_a_config_error(root: Path, blob: bytes) -> None:
    path = root / "generated.yaml"
    path.write_bytes(blob)
    try:
        load_config(path, ENVIRON)
    except ConfigError as exc:
        check_problems(exc, path)


@FAST
@given(data=st.data())
def test_any_tree_written_as_yaml_gives_a_config_or_a_config_error(
    root: Path, data: st.DataObject
) -> None:
    tree = data.draw(changed_configs(root))
    path = root / "generated.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    try:
        load_config(path, ENVIRON)
    except ConfigError as exc:
        check_problems(exc, path)


# -- durations ------------------------------------------------------------------------------------


DURATION_INPUTS = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\s*[0-9.]{0,420}\s*(ms|s|m|h|d|M|us)?\s*", fullmatch=True),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 10**5000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@FAST
@given(value=DURATION_INPUTS)
def test_a_duration_is_finite_seconds_or_a_value_error(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        assert str(exc).startswith("expected a duration")
        assert len(str(exc)) < 200  # a 5000-digit number is not repeated
    else:
        assert isinstance(seconds, float)
        assert math.isfinite(seconds) and 0.0 <= seconds <= MAX_DURATION


UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@FAST
@given(number=st.integers(min_value=0, max_value=10**12), unit=st.sampled_from(sorted(UNITS)))
def test_durations_round_trip(number: int, unit: str) -> None:
    expected = number * UNITS[unit]
    if expected > MAX_DURATION:
        with pytest.raises(ValueError, match="at most 100 years"):
            parse_duration(f"{number}{unit}")
    else:
        assert math.isclose(parse_duration(f"{number}{unit}"), expected, rel_tol=1e-12)
        assert parse_duration(f" {number} {unit} ") == parse_duration(f"{number}{unit}")
