"""Configuration messages a person can act on: the forms of a duration, the nearest key for a
misspelt one, pydantic's errors in plain words (never its own wording), a base_url holding the
endpoint path, notify URLs no Apprise plugin accepts (never their tokens), and the checks
`check-config` runs on this machine (preflight)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from camwatch.config import Config, parse_config, rule_warnings
from camwatch.config.messages import _model_in
from camwatch.config.preflight import User, camera_warning, preflight, state_dir_problems
from camwatch.config.values import DURATION_FORMS
from camwatch.errors import ConfigError

# pydantic's own wording, and its documentation links: none may reach a person.
RAW_PYDANTIC = re.compile(
    r"Input should|after validation|pydantic|type=|errors\.pydantic\.dev|Field required"
    r"|Extra inputs|Value error,|instance of",
    re.IGNORECASE,
)
TOKEN = "T0KEN-5e3c1d"  # stands for the secret part of an Apprise URL


@pytest.fixture
def cams(tmp_path: Path) -> Path:
    """Return a folder holding the camera folder `front`."""
    (tmp_path / "cams" / "front").mkdir(parents=True)
    return tmp_path / "cams"


def valid(cams: Path) -> dict[str, Any]:
    """Return a valid settings tree touching every section that has fields of its own."""
    return {
        "caption": {"api_key": "k", "retry": {"attempts": 3}},
        "cameras": [{"name": "front", "path": str(cams / "front")}],
        "state_dir": str(cams.parent / "state"),
        "rules": [{"name": "r", "any": ["person"]}],
        "webhooks": [{"name": "h", "url": "https://h.example/x", "headers": {"X-A": "b"}}],
        "notify": [{"name": "n", "urls": ["json://h.example/x"]}],
        "matching": {"negations": ["not"]},
        "delivery": {"max_age": "7d"},
        "log": {"level": "info"},
    }


def without_quoted(problem: str) -> str:
    """Return a problem without the values it quotes: a value may say anything."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", problem)


def problems(data: Any) -> list[str]:
    """Return the problems parse_config reports for `data` (failing if there are none)."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    for problem in info.value.problems:
        assert not RAW_PYDANTIC.search(problem), problem
    return info.value.problems


def changed(cams: Path, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = valid(cams)
    change(data)
    return data


# -- durations ------------------------------------------------------------------------------------


def test_a_bad_duration_lists_the_accepted_forms(cams: Path) -> None:
    data = changed(cams, lambda d: d["rules"][0].update(cooldown="soon"))
    assert problems(data) == [
        "rules[0].cooldown: expected a duration, got 'soon'"
        " (write e.g. 500ms, 1.5s, 5m, 2h or 7d, or a number of seconds)"
    ]
    assert DURATION_FORMS == "(write e.g. 500ms, 1.5s, 5m, 2h or 7d, or a number of seconds)"


# -- unknown keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(debounse="2s"), "debounse: unknown key; did you mean 'debounce'?"),
        (
            lambda d: d["caption"].update(concurrncy=4),
            "caption.concurrncy: unknown key; did you mean 'concurrency'?",
        ),
        (
            lambda d: d["caption"]["retry"].update(backof_max="1m"),
            "caption.retry.backof_max: unknown key; did you mean 'backoff_max'?",
        ),
        (
            lambda d: d["rules"][0].update(camera=["front"]),
            "rules[0].camera: unknown key; did you mean 'cameras'?",
        ),
        (
            # Right name, wrong place: said where it belongs.
            lambda d: d["cameras"][0].update(debounce="2s"),
            "cameras[0].debounce: unknown key here; 'debounce' is a setting of the top level",
        ),
        (
            lambda d: d["cameras"][0].update(debounse="2s"),
            "cameras[0].debounse: unknown key; did you mean 'debounce' (a setting of the top"
            " level)?",
        ),
        (
            lambda d: d["cameras"][0].update(attempts=3),
            "cameras[0].attempts: unknown key here; 'attempts' is a setting of caption.retry"
            " and caption.fallback.retry",
        ),
        (lambda d: d.update(colour="red"), "colour: unknown key (misspelt?)"),
    ],
    ids=["top", "caption", "nested", "in-a-list", "wrong-place", "wrong-place-misspelt",
         "deep-elsewhere", "no-match"],
)  # fmt: skip
def test_an_unknown_key_suggests_the_nearest_known_key(
    cams: Path, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    assert problems(changed(cams, change)) == [expected]


# -- pydantic's error types, each in plain words ------------------------------------------------

# One broken setting per error type the models can produce, and the exact line it gives.
CORPUS = [
    pytest.param(
        lambda d: d.update(cameras=[]),
        "cameras: at least one camera is needed, got an empty list",
        id="too_short",
    ),
    pytest.param(
        lambda d: d["notify"][0].update(urls=[]),
        "notify[0].urls: at least one URL is needed, got an empty list",
        id="too_short-urls",
    ),
    pytest.param(
        lambda d: d["cameras"][0].pop("path"),
        "cameras[0].path: required",
        id="missing",
    ),
    pytest.param(
        lambda d: d["cameras"][0].update(name=123),
        "cameras[0].name: expected text, got 123; quote it to make it text",
        id="string_type",
    ),
    pytest.param(
        lambda d: d["rules"][0].update(name=""),
        "rules[0].name: must not be empty",
        id="string_too_short",
    ),
    pytest.param(
        lambda d: d["caption"].update(concurrency="many"),
        "caption.concurrency: expected a whole number, got 'many'",
        id="int_parsing",
    ),
    pytest.param(
        lambda d: d["caption"].update(concurrency=[4]),
        "caption.concurrency: expected a whole number, got a list",
        id="int_type",
    ),
    pytest.param(
        lambda d: d["caption"].update(concurrency=1.5),
        "caption.concurrency: expected a whole number, got 1.5",
        id="int_from_float",
    ),
    pytest.param(
        lambda d: d["caption"].update(concurrency=float("nan")),
        "caption.concurrency: expected a finite number, got nan",
        id="finite_number",
    ),
    pytest.param(
        lambda d: d["cameras"][0].update(recursive="maybe"),
        "cameras[0].recursive: expected true or false, got 'maybe'",
        id="bool_parsing",
    ),
    pytest.param(
        lambda d: d["log"].update(syslog=2.5),
        "log.syslog: expected true or false, got 2.5",
        id="bool_type",
    ),
    pytest.param(
        lambda d: d["caption"]["retry"].update(attempts=0),
        "caption.retry.attempts: expected at least 1, got 0",
        id="greater_than_equal",
    ),
    pytest.param(
        lambda d: d["caption"].update(concurrency=1000),
        "caption.concurrency: expected at most 256, got 1000",
        id="less_than_equal",
    ),
    pytest.param(
        lambda d: d["webhooks"][0].update(headers="X-A: b"),
        (
            "webhooks[0].headers: expected a mapping (key: value lines), got a value not "
            "shown (a secret?)"
        ),
        id="dict_type",
    ),
    pytest.param(
        lambda d: d["rules"][0].update(any="person"),
        "rules[0].any: expected a list (lines starting with '- ', or [a, b]), got 'person'",
        id="list_type",
    ),
    pytest.param(
        lambda d: d.update(delivery="fast"),
        "delivery: expected a section of settings (key: value lines), got 'fast'",
        id="model_type",
    ),
    pytest.param(
        lambda d: d.update(caption=None),
        "caption: expected a section of settings (key: value lines), got nothing",
        id="model_type-null",
    ),
    pytest.param(
        lambda d: d["rules"][0].update(severity="critcal"),
        (
            "rules[0].severity: expected 'info', 'warning' or 'critical', got 'critcal'; "
            "did you mean 'critical'?"
        ),
        id="literal_error",
    ),
    pytest.param(
        lambda d: d.update(state_dir=5),
        "state_dir: expected a path, got 5",
        id="path_type",
    ),
    pytest.param(
        lambda d: d["rules"][0].update(days=["someday"]),
        "rules[0].days[0]: expected a day such as 'mon', got 'someday'",
        id="value_error",
    ),
]


@pytest.mark.parametrize(("change", "expected"), CORPUS)
def test_each_pydantic_error_type_reads_as_plain_words(
    cams: Path, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    assert problems(changed(cams, change)) == [expected]


@pytest.mark.parametrize(
    ("change", "secret"),
    [
        (lambda d: d["caption"].update(api_key=918273645546372819), "918273645546372819"),
        (lambda d: d["webhooks"][0].update(secret=5647382910564738), "5647382910564738"),
        (lambda d: d["webhooks"][0]["headers"].update(Authorization=4455667788), "4455667788"),
        (lambda d: d["notify"][0].update(urls=[123456789012]), "123456789012"),
    ],
    ids=["api_key", "webhook-secret", "header", "notify-url"],
)
def test_a_secret_of_the_wrong_type_is_not_quoted(
    cams: Path, change: Callable[[dict[str, Any]], Any], secret: str
) -> None:
    (problem,) = problems(changed(cams, change))
    assert problem.endswith("expected text, got a number; quote it to make it text"), problem
    assert secret not in problem


def _field_paths(model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Yield the path of every field of `model` and of the models inside it, as a settings tree
    reaches it (a list of models is entered at index 0)."""
    for name, field in model.model_fields.items():
        yield (*prefix, name)
        inner = _model_in(field.annotation)
        if inner is not None:
            is_list = "list[" in str(field.annotation)
            yield from _field_paths(inner, (*prefix, name, 0) if is_list else (*prefix, name))


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent: Any = data
    for part in path[:-1]:
        if isinstance(parent, dict):
            parent = parent.setdefault(
                part,
                [{}]
                if isinstance(part, str) and part in {"cameras", "rules", "webhooks", "notify"}
                else {},
            )
        else:
            parent = parent[part]
    parent[path[-1]] = value


JUNK = [None, True, -1, 0, 1.5, float("nan"), 10**400, "", "x", [], [1], {}, {"a": 1}, ["x", 2]]
FIELDS = list(_field_paths(Config))


def test_the_sweep_reaches_every_section() -> None:
    assert ("cameras", 0, "poll_interval") in FIELDS
    assert ("caption", "retry", "attempts") in FIELDS
    assert ("notify", 0, "urls") in FIELDS


@pytest.mark.parametrize("path", FIELDS, ids=[".".join(map(str, p)) for p in FIELDS])
def test_junk_in_any_field_gives_no_pydantic_wording(cams: Path, path: tuple[Any, ...]) -> None:
    for value in JUNK:
        data = valid(cams)
        _set(data, path, value)
        try:
            parse_config(data, {})
        except ConfigError as exc:
            for problem in exc.problems:
                assert not RAW_PYDANTIC.search(without_quoted(problem)), (path, value, problem)
                assert problem.split(":", 1)[0].startswith(str(path[0])), (path, problem)


_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(FIELDS), value=_VALUES)
def test_generated_junk_in_any_field_gives_no_pydantic_wording(
    cams: Path, path: tuple[Any, ...], value: Any
) -> None:
    data = valid(cams)
    _set(data, path, value)
    try:
        parse_config(data, {})
    except ConfigError as exc:
        for problem in exc.problems:
            assert not RAW_PYDANTIC.search(without_quoted(problem)), (path, value, problem)


# -- caption.base_url holding the endpoint path ---------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "endpoint", "expected"),
    [
        (
            "https://security.memories.ai/v1/understand/uploadImg",
            None,
            "caption.base_url: ends with the endpoint path '/v1/understand/uploadImg'; give only"
            " the address (https://security.memories.ai); the path is caption.endpoint",
        ),
        (
            "https://security.memories.ai/v1/understand/uploadImg/",
            None,
            "caption.base_url: ends with the endpoint path '/v1/understand/uploadImg'; give only"
            " the address (https://security.memories.ai); the path is caption.endpoint",
        ),
        (
            "https://security.memories.ai/v1/understand/uploadImgFile",
            None,
            "caption.base_url: ends with the endpoint path '/v1/understand/uploadImgFile'; give"
            " only the address (https://security.memories.ai); the path is caption.endpoint"
            " (set it to '/v1/understand/uploadImgFile' to use that path)",
        ),
        (
            "https://user:pw@proxy.example:8443/caption/api/describe?key=k",
            "/api/describe",
            "caption.base_url: ends with the endpoint path '/api/describe'; give only the address"
            " (https://proxy.example:8443/caption); the path is caption.endpoint",
        ),
    ],
    ids=["default", "trailing-slash", "newer-endpoint", "own-endpoint-with-credentials"],
)
def test_a_base_url_with_the_endpoint_path_is_refused(
    cams: Path, base_url: str, endpoint: str | None, expected: str
) -> None:
    data = valid(cams)
    data["caption"]["base_url"] = base_url
    if endpoint is not None:
        data["caption"]["endpoint"] = endpoint
    assert problems(data) == [expected]


def test_a_base_url_with_another_path_is_fine(cams: Path) -> None:
    data = valid(cams)
    data["caption"]["base_url"] = "https://proxy.example/memories"
    assert parse_config(data, {}).caption.base_url == "https://proxy.example/memories"


# -- Apprise URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"foo://{TOKEN}/x",
            "notify[0].urls[1]: no Apprise plugin understands 'foo://...' URLs"
            " (see https://github.com/caronc/apprise/wiki)",
        ),
        (
            f"discord://{TOKEN}",
            "notify[0].urls[1]: Apprise's plugin for 'discord://...' URLs cannot use this one"
            " (a part is missing or malformed; see https://github.com/caronc/apprise/wiki)",
        ),
        (
            f"{TOKEN}@example.com",
            "notify[0].urls[1]: not an Apprise URL (expected service://..., e.g. ntfy://topic;"
            " see https://github.com/caronc/apprise/wiki)",
        ),
    ],
    ids=["no-plugin", "plugin-refuses", "not-a-url"],
)
def test_an_apprise_url_no_plugin_accepts_is_refused_without_its_token(
    cams: Path, url: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = valid(cams)
    data["notify"][0]["urls"] = ["ntfy://alerts", url]
    with caplog.at_level(logging.DEBUG):
        assert problems(data) == [expected]
    # Apprise logs a URL it cannot parse, whole: not while camwatch checks it.
    assert TOKEN not in caplog.text


def test_notify_urls_apprise_accepts_are_fine(cams: Path) -> None:
    data = valid(cams)
    data["notify"][0]["urls"] = ["ntfy://alerts", "json://hooks.example/x", "mailto://u:p@x.org"]
    assert len(parse_config(data, {}).notify[0].urls) == 3


# -- warnings -----------------------------------------------------------------------------------


def test_no_rules_is_a_warning(cams: Path) -> None:
    data = valid(cams)
    assert rule_warnings(parse_config(data, {})) == []
    for rules in ([], None):
        if rules is None:
            data.pop("rules")
        else:
            data["rules"] = rules
        assert rule_warnings(parse_config(data, {})) == [
            "rules: none configured; no image will ever raise an alert"
        ]


# -- preflight (as root here: permissions are tested as nobody in tests/e2e) ----------------------

ROOT = User("root", 0)


def test_preflight_passes_a_state_dir_it_can_create(cams: Path) -> None:
    config = parse_config(valid(cams), {})
    assert preflight(config, ROOT).errors == []
    assert not config.state_dir.exists()  # checking creates nothing


def test_a_state_dir_that_is_a_file_or_under_one_is_an_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert state_dir_problems(a_file, ROOT) == [
        f"state_dir: {str(a_file)!r} is not a folder; choose a folder (it is created if missing)"
    ]
    assert state_dir_problems(a_file / "state", ROOT) == [
        f"state_dir: {str(a_file / 'state')!r} cannot be created: {str(a_file)!r} is not a folder"
    ]


def test_a_missing_camera_folder_keeps_its_warning(cams: Path) -> None:
    assert camera_warning("cameras[0].path", cams / "front", ROOT) is None
    assert camera_warning("cameras[1].path", cams / "usb", ROOT) == (
        f"cameras[1].path: {str(cams / 'usb')!r} is missing; the daemon starts anyway and"
        " watches it once it is there"
    )


def test_the_current_user_is_named_with_its_uid() -> None:
    user = User.current()
    assert user.uid == os.geteuid()
    assert str(user) == f"user {user.name} (uid {user.uid})"
