"""Configuration: durations, interpolation, every kind of problem with its exact field path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from camwatch.config import (
    CaptionConfig,
    load_config,
    parse_config,
    parse_day,
    parse_duration,
    parse_time_range,
    resolve_api_key,
)
from camwatch.config.values import DURATION_FORMS
from camwatch.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cams(tmp_path: Path) -> Path:
    """Return a folder holding two camera folders, `front` and `back`."""
    root = tmp_path / "cams"
    (root / "front").mkdir(parents=True)
    (root / "back").mkdir()
    return root


def minimal(cams: Path, **extra: Any) -> dict[str, Any]:
    """Return the smallest valid settings tree, with `extra` top-level keys added."""
    return {"cameras": [{"name": "front", "path": str(cams / "front")}], **extra}


def problems(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    """Return the problems parse_config reports for `data` (failing if there are none)."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, {} if environ is None else environ)
    return info.value.problems


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("30", 30.0),
        (" 2s ", 2.0),
        (".5s", 0.5),
        (3, 3.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_durations_are_parsed_to_seconds(value: Any, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [-1, -0.5, "-5s", "soon", "5 minutes", "5M", "", "1e3", "nan", True, None, [1],
     float("nan"), float("inf")],
)  # fmt: skip
def test_bad_durations_are_rejected_naming_the_value(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration, got "):
        parse_duration(value)


def test_bad_duration_names_its_field_path(cams: Path) -> None:
    data = minimal(
        cams,
        rules=[
            {"name": "a", "any": ["x"]},
            {"name": "b", "any": ["y"], "cooldown": "5m"},
            {"name": "c", "any": ["z"], "cooldown": "soon"},
        ],
    )
    assert problems(data) == [
        f"rules[2].cooldown: expected a duration, got 'soon' {DURATION_FORMS}"
    ]


def test_yaml_nan_duration_is_a_config_error(cams: Path) -> None:
    assert problems(minimal(cams, debounce=float("nan"))) == [
        f"debounce: expected a duration, got nan {DURATION_FORMS}"
    ]


def test_nested_durations_are_parsed(cams: Path) -> None:
    config = parse_config(
        minimal(
            cams,
            debounce="500ms",
            caption={"timeout": "1.5s", "retry": {"backoff_max": "2m"}},
            delivery={"max_age": "7d"},
        ),
        {},
    )
    assert config.debounce == 0.5
    assert config.caption.timeout == 1.5
    assert config.caption.retry.backoff_max == 120.0
    assert config.delivery.max_age == 7 * 86400.0


# -- defaults and the happy path ----------------------------------------------------------------


def test_minimal_config_gets_the_spec_defaults(cams: Path) -> None:
    config = parse_config(minimal(cams), {})
    assert config.caption.base_url == "https://security.memories.ai"
    assert config.caption.endpoint == "/v1/understand/uploadImg"
    assert config.caption.retry.attempts == 6
    assert config.caption.pause_probe == 600.0
    assert config.cameras[0].recursive is True
    assert config.debounce == 2.0
    assert config.complete_timeout == 600.0
    assert config.after == "keep"
    assert config.delivery.backoff_initial == 1.0
    assert config.delivery.backoff_max == 300.0
    assert config.delivery.max_age == 7 * 86400.0
    assert config.retention == 30 * 86400.0


def test_empty_file_needs_cameras(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == ["cameras: required"]


def test_root_must_be_a_mapping() -> None:
    assert problems(["a", "b"]) == ["<root>: expected a mapping of settings"]


# -- each kind of problem ------------------------------------------------------------------------


def test_unknown_keys_are_errors_with_their_path(cams: Path) -> None:
    data = minimal(cams, debounse="2s")
    data["cameras"][0]["extra"] = 1
    data["caption"] = {"retry": {"attempt": 3}}
    assert sorted(problems(data)) == [
        "cameras[0].extra: unknown key (misspelt?)",
        "caption.retry.attempt: unknown key; did you mean 'attempts'?",
        "debounse: unknown key; did you mean 'debounce'?",
    ]


def test_missing_required_fields(cams: Path) -> None:
    data = {
        "cameras": [{"name": "front"}],
        "webhooks": [{"name": "ops"}],
        "rules": [{"any": ["x"]}],
    }
    assert sorted(problems(data)) == [
        "cameras[0].path: required",
        "rules[0].name: required",
        "webhooks[0].url: required",
    ]
    assert problems({}) == ["cameras: required"]


def test_wrong_literals_name_the_value(cams: Path) -> None:
    data = minimal(cams, after="archive", rules=[{"name": "r", "any": ["x"], "severity": "urgent"}])
    assert sorted(problems(data)) == [
        "after: expected 'keep', 'delete' or 'move', got 'archive'",
        "rules[0].severity: expected 'info', 'warning' or 'critical', got 'urgent'",
    ]


def test_log_level_is_case_insensitive_but_checked(cams: Path) -> None:
    assert parse_config(minimal(cams, log={"level": "DEBUG"}), {}).log.level == "debug"
    assert problems(minimal(cams, log={"level": "loud"})) == [
        "log.level: expected 'debug', 'info', 'warning' or 'error', got 'loud'"
    ]


def test_bad_regex(cams: Path) -> None:
    (problem,) = problems(minimal(cams, rules=[{"name": "r", "regex": "fall(en"}]))
    assert problem.startswith("rules[0].regex: invalid regular expression: ")


def test_rule_needs_a_condition(cams: Path) -> None:
    assert problems(minimal(cams, rules=[{"name": "r", "none": ["x"]}])) == [
        "rules[0]: a rule needs at least one of any, all, regex or ask"
    ]


def test_phrase_needs_a_word(cams: Path) -> None:
    assert problems(minimal(cams, rules=[{"name": "r", "any": ["ok", "--"]}])) == [
        "rules[0].any: a phrase needs at least one word, got '--'"
    ]


def test_time_ranges_and_days(cams: Path) -> None:
    config = parse_config(
        minimal(
            cams,
            rules=[
                {
                    "name": "r",
                    "any": ["x"],
                    "active": ["22:00-06:00", "7:30 - 24:00"],
                    "days": ["Monday", "fri", " SAT "],
                }
            ],
        ),
        {},
    )
    assert config.rules[0].active == [(1320, 360), (450, 1440)]
    assert config.rules[0].days == ["mon", "fri", "sat"]


@pytest.mark.parametrize("bad", ["25:00-06:00", "22:00", "22:60-01:00", "24:30-01:00", 5])
def test_bad_time_range(cams: Path, bad: Any) -> None:
    assert problems(minimal(cams, rules=[{"name": "r", "any": ["x"], "active": [bad]}])) == [
        f"rules[0].active[0]: expected a time range such as '22:00-06:00', got {bad!r}"
    ]


@pytest.mark.parametrize("bad", [[None, 5], ["22:00", "06:00"], [5000, 60], [-3, 60]])
def test_time_range_as_a_pair_must_be_minutes(cams: Path, bad: list[Any]) -> None:
    # A pair of minutes is the parsed form; anything else in a pair is a config error, never a
    # crash (a TypeError would escape pydantic).
    assert problems(minimal(cams, rules=[{"name": "r", "any": ["x"], "active": [bad]}])) == [
        f"rules[0].active[0]: expected a time range such as '22:00-06:00', got {bad!r}"
    ]
    assert parse_time_range([1320, 360]) == (1320, 360)


@pytest.mark.parametrize("bad", ["funday", "mo", "mondays", 1, ""])
def test_bad_day(cams: Path, bad: Any) -> None:
    assert problems(minimal(cams, rules=[{"name": "r", "any": ["x"], "days": [bad]}])) == [
        f"rules[0].days[0]: expected a day such as 'mon', got {bad!r}"
    ]
    with pytest.raises(ValueError):
        parse_day(bad)


def test_unknown_time_zone(cams: Path) -> None:
    assert problems(minimal(cams, timezone="Mars/Olympus")) == [
        "timezone: unknown time zone 'Mars/Olympus'"
    ]


def test_duplicate_names(cams: Path) -> None:
    data = {
        "cameras": [
            {"name": "front", "path": str(cams / "front")},
            {"name": "front", "path": str(cams / "back")},
        ],
        "rules": [{"name": "r", "any": ["x"]}, {"name": "r", "any": ["y"]}],
        "webhooks": [{"name": "w", "url": "http://a"}, {"name": "w", "url": "http://b"}],
    }
    assert problems(data) == [
        "cameras[1].name: duplicate name 'front'",
        "rules[1].name: duplicate name 'r'",
        "webhooks[1].name: duplicate name 'w'",
    ]


def test_unknown_references(cams: Path) -> None:
    data = minimal(
        cams,
        webhooks=[{"name": "ops", "url": "https://hooks.example.com/x"}],
        notify=[{"name": "phones", "urls": ["ntfys://ntfy.sh/x"]}],
        rules=[
            {
                "name": "r",
                "any": ["x"],
                "webhooks": ["ops", "opz"],
                "cameras": ["frontdoor"],
                "notify": ["pager"],
            }
        ],
    )
    assert problems(data) == [
        "rules[0].cameras[0]: unknown camera 'frontdoor'",
        "rules[0].webhooks[1]: unknown webhook 'opz'",
        "rules[0].notify[0]: unknown notify target 'pager'",
    ]


def test_move_needs_archive_dir(cams: Path, tmp_path: Path) -> None:
    assert problems(minimal(cams, after="move")) == ["archive_dir: required when after is 'move'"]
    archive = tmp_path / "archive"
    config = parse_config(minimal(cams, after="move", archive_dir=str(archive)), {})
    assert config.archive_dir == archive


def test_archive_dir_inside_a_camera_is_refused(cams: Path) -> None:
    data = minimal(cams, after="move", archive_dir=str(cams / "front" / "done"))
    assert problems(data) == [
        "archive_dir: inside cameras[0].path; moved files would be seen again"
    ]


def test_url_upload_needs_public_url(cams: Path) -> None:
    assert problems(minimal(cams, caption={"upload": "url"})) == [
        "caption.public_url: required when upload is 'url'"
    ]
    config = parse_config(
        minimal(cams, caption={"upload": "url", "public_url": "https://c.example/{relpath}"}), {}
    )
    assert config.caption.upload == "url"


def test_bad_urls(cams: Path) -> None:
    data = minimal(
        cams,
        caption={"base_url": "security.memories.ai"},
        webhooks=[{"name": "w", "url": "ftp://x"}],
    )
    assert sorted(problems(data)) == [
        # Not quoted: without scheme://host, no part of the value is known to be safe to show.
        "caption.base_url: expected an http(s) URL, got one without http:// or https://",
        "webhooks[0].url: expected an http(s) URL, got 'ftp://x'",
    ]


def test_nested_cameras_are_refused_in_either_order(cams: Path) -> None:
    (cams / "front" / "porch").mkdir()
    outer = {"name": "outer", "path": str(cams / "front")}
    inner = {"name": "inner", "path": str(cams / "front" / "porch")}
    front = str(cams / "front")
    porch = str(cams / "front" / "porch")
    assert problems({"cameras": [outer, inner]}) == [
        f"cameras[1].path: inside cameras[0].path ({front!r}); a file would belong to two cameras"
    ]
    assert problems({"cameras": [inner, outer]}) == [
        f"cameras[0].path: inside cameras[1].path ({front!r}); a file would belong to two cameras"
    ]
    same = {"name": "again", "path": porch}
    assert problems({"cameras": [inner, same]}) == [
        f"cameras[1].path: inside cameras[0].path ({porch!r}); a file would belong to two cameras"
    ]


def test_sibling_with_a_common_prefix_is_not_nested(cams: Path) -> None:
    (cams / "front2").mkdir()
    data = {
        "cameras": [
            {"name": "a", "path": str(cams / "front")},
            {"name": "b", "path": str(cams / "front2")},
        ]
    }
    assert len(parse_config(data, {}).cameras) == 2


def test_camera_path_must_be_a_folder(cams: Path) -> None:
    a_file = cams / "file.jpg"
    a_file.write_bytes(b"x")
    assert problems({"cameras": [{"name": "x", "path": str(a_file)}]}) == [
        f"cameras[0].path: not a directory: {str(a_file)!r}"
    ]


def test_a_missing_camera_folder_is_not_a_config_error(cams: Path) -> None:
    # An unmounted share or a USB disk not yet there: the daemon waits for it.
    config = parse_config({"cameras": [{"name": "x", "path": str(cams / "nope")}]}, {})
    assert config.cameras[0].path == (cams / "nope").resolve()


def test_watch_settings(cams: Path) -> None:
    camera = {"name": "x", "path": str(cams / "front")}
    config = parse_config({"cameras": [camera]}, {})
    assert (config.cameras[0].watch, config.cameras[0].poll_interval) == ("auto", 2.0)
    assert config.cameras[0].expect_every is None
    custom = {**camera, "watch": "poll", "poll_interval": "500ms", "expect_every": "2h"}
    config = parse_config({"cameras": [custom]}, {})
    assert (config.cameras[0].watch, config.cameras[0].poll_interval) == ("poll", 0.5)
    assert config.cameras[0].expect_every == 7200.0
    assert problems({"cameras": [{**camera, "watch": "fanotify"}]}) == [
        "cameras[0].watch: expected 'auto', 'inotify' or 'poll', got 'fanotify';"
        " did you mean 'inotify'?"
    ]
    assert problems({"cameras": [{**camera, "poll_interval": "soon"}]}) == [
        f"cameras[0].poll_interval: expected a duration, got 'soon' {DURATION_FORMS}"
    ]
    assert problems({"cameras": [{**camera, "poll_interval": 0}]}) == [
        "cameras[0].poll_interval: expected at least 50ms, got 0s"
    ]


def test_camera_path_is_resolved_through_a_symlink(cams: Path, tmp_path: Path) -> None:
    link = tmp_path / "mnt-front"
    link.symlink_to(cams / "front", target_is_directory=True)
    config = parse_config({"cameras": [{"name": "front", "path": str(link)}]}, {})
    assert config.cameras[0].path == (cams / "front").resolve()
    assert not config.cameras[0].path.is_symlink()


def test_every_problem_is_reported_at_once(cams: Path) -> None:
    data = minimal(
        cams,
        debounce="later",
        after="shred",
        rules=[{"name": "r", "any": ["x"], "cooldown": "soon"}],
    )
    assert len(problems(data)) == 3


# -- interpolation --------------------------------------------------------------------------------


def test_missing_variables_name_the_variable_and_field(cams: Path) -> None:
    data = {
        "cameras": [{"name": "front", "path": "${CAM_ROOT}/front"}],
        "webhooks": [{"name": "ops", "url": "https://x", "secret": "${HOOK_SECRET}"}],
    }
    assert problems(data) == [
        "cameras[0].path: environment variable CAM_ROOT is not set",
        "webhooks[0].secret: environment variable HOOK_SECRET is not set",
    ]


def test_variables_and_defaults(cams: Path) -> None:
    data = {
        "cameras": [{"name": "front", "path": "${CAM_ROOT}/front"}],
        "caption": {"api_key": "${KEY}", "user_prompt": "pre-${UNSET:-dflt}-post"},
        "webhooks": [{"name": "ops", "url": "${HOOK_URL:-http://127.0.0.1:1/x}"}],
        "state_dir": "${EMPTY:-/var/lib/cw}",
    }
    environ = {"CAM_ROOT": str(cams), "KEY": "k-123", "EMPTY": ""}
    config = parse_config(data, environ)
    assert config.cameras[0].path == (cams / "front").resolve()
    assert config.caption.api_key is not None
    assert config.caption.api_key.get_secret_value() == "k-123"
    assert config.caption.user_prompt == "pre-dflt-post"
    assert config.webhooks[0].url == "http://127.0.0.1:1/x"
    assert config.state_dir == Path("/var/lib/cw")
    environ["HOOK_URL"] = "https://hooks.example.com/cw"
    assert parse_config(data, environ).webhooks[0].url == "https://hooks.example.com/cw"


def test_empty_variable_without_default_is_kept_empty(cams: Path) -> None:
    data = minimal(cams, caption={"system_prompt": "x${EMPTY}y"})
    assert parse_config(data, {"EMPTY": ""}).caption.system_prompt == "xy"


def test_secrets_do_not_show_in_the_config_repr(cams: Path) -> None:
    data = minimal(
        cams,
        caption={"api_key": "${KEY}"},
        webhooks=[{"name": "ops", "url": "https://x", "secret": "hook-secret-1-long-enough"}],
    )
    text = repr(parse_config(data, {"KEY": "api-secret-1"}))
    assert "api-secret-1" not in text
    assert "hook-secret-1" not in text


# -- files ---------------------------------------------------------------------------------------


def test_invalid_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("debounce: 2s\ncameras:\n  - name: a\n    path: x: y\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    (problem,) = info.value.problems
    assert problem == f"{path}:4:12: invalid YAML: mapping values are not allowed here"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_load_config_interpolates_with_the_given_environment(cams: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("cameras:\n  - name: front\n    path: ${ROOT}/front\ndebounce: ${D:-1s}\n")
    config = load_config(path, {"ROOT": str(cams)})
    assert config.debounce == 1.0
    assert config.cameras[0].name == "front"


def test_the_example_config_validates(tmp_path: Path) -> None:
    example = REPO / "config.example.yaml"
    if not example.exists():
        pytest.skip("config.example.yaml not written yet")
    text = example.read_text()
    cams = tmp_path / "cameras"
    names = re.findall(r"^\s*- name: (\S+)\n\s*path: ", text, flags=re.MULTILINE)
    # The example's camera folders live under ${CAMWATCH_CAMERAS:-/srv/cameras}; point it here.
    for name in names:
        (cams / name).mkdir(parents=True)
    environ = {
        "CAMWATCH_API_KEY": "test-key",
        "CAMWATCH_CAMERAS": str(cams),
        "CAMWATCH_STATE_DIR": str(tmp_path / "state"),
    }
    config = load_config(example, environ)
    assert {c.name for c in config.cameras} == set(names)
    assert all(c.path.is_relative_to(cams) for c in config.cameras)
    assert resolve_api_key(config.caption, environ) == "test-key"


# -- the API key ----------------------------------------------------------------------------------


def test_api_key_from_the_config() -> None:
    caption = CaptionConfig.model_validate({"api_key": "  abc-123 \n"})
    assert resolve_api_key(caption, {}) == "abc-123"


def test_api_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api_key").write_text("from-credential\n")
    caption = CaptionConfig.model_validate({"api_key_file": str(key_file)})
    # api_key_file wins over a systemd credential.
    assert resolve_api_key(caption, {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-file"
    # An empty api_key falls through to the file.
    caption = CaptionConfig.model_validate({"api_key": "", "api_key_file": str(key_file)})
    assert resolve_api_key(caption, {}) == "from-file"


def test_api_key_from_a_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api_key").write_text("from-credential\n")
    assert resolve_api_key(CaptionConfig(), {"CREDENTIALS_DIRECTORY": str(creds)}) == (
        "from-credential"
    )


def test_no_api_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^caption\.api_key: no API key"):
        resolve_api_key(CaptionConfig(), {})
    missing = tmp_path / "nope"
    caption = CaptionConfig.model_validate({"api_key_file": str(missing)})
    with pytest.raises(ConfigError) as info:
        resolve_api_key(caption, {})
    assert info.value.problems == [
        f"caption.api_key_file: cannot read {str(missing)!r}: No such file or directory"
    ]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    caption = CaptionConfig.model_validate({"api_key_file": str(empty)})
    with pytest.raises(ConfigError) as info:
        resolve_api_key(caption, {})
    assert info.value.problems == [f"caption.api_key_file: {str(empty)!r} is empty"]


def test_api_key_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api_key").write_text("env-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert resolve_api_key(CaptionConfig()) == "env-credential"


# -- hostile or broken files: always a ConfigError, never a traceback (audit finding 1) -----------


def _load_text(tmp_path: Path, text: str | bytes) -> list[str]:
    """Write `text` as a config file; return the problems load_config reports for it."""
    path = tmp_path / "config.yaml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return info.value.problems


def test_a_file_that_is_not_utf8_names_its_line_and_column(cams: Path, tmp_path: Path) -> None:
    text = f"cameras:\n  - name: front\n    path: {cams / 'front'}\n# caf\xe9\n".encode("latin-1")
    path = tmp_path / "config.yaml"
    assert _load_text(tmp_path, text) == [
        f"{path}:4:6: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


def test_a_path_component_longer_than_the_filesystem_allows(cams: Path) -> None:
    long = "a" * 256
    state_dir, archive_dir, camera = f"/tmp/{long}/x", f"/{long}", str(cams / long)
    data = minimal(cams, state_dir=state_dir, after="move", archive_dir=archive_dir)
    data["cameras"].append({"name": "back", "path": camera})
    message = "a path component is longer than 255 bytes"
    assert sorted(problems(data)) == [
        f"archive_dir: {message}: {archive_dir[:40] + '...'!r}",
        f"cameras[1].path: {message}: {camera[:40] + '...'!r}",
        f"state_dir: {message}: {state_dir[:40] + '...'!r}",
    ]


def test_a_path_with_a_nul_byte_is_refused(cams: Path) -> None:
    data = minimal(cams, state_dir="/var/lib/a\x00b", caption={"api_key_file": "/k\x00"})
    assert sorted(problems(data)) == [
        "caption.api_key_file: a path cannot contain a NUL byte",
        "state_dir: a path cannot contain a NUL byte",
    ]


def test_an_integer_too_large_for_a_float_is_not_a_duration(cams: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(10**400)
    assert str(info.value) == (
        "expected a duration of at most 100 years, got an integer of about 401 digits"
    )
    text = f"cameras:\n  - name: front\n    path: {cams / 'front'}\ndebounce: 1{'0' * 400}\n"
    (problem,) = _load_text(tmp_path, text)
    assert problem == (
        "debounce: expected a duration of at most 100 years, got an integer of about 401 digits"
    )


@pytest.mark.parametrize("value", ["1" * 400 + "s", 1e300, "99999999999d"])
def test_a_duration_too_large_to_wait_for_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration of at most 100 years, got "):
        parse_duration(value)


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 700
    path = tmp_path / "config.yaml"
    assert _load_text(tmp_path, BILLION_LAUGHS) == [
        f"{path}:2:8: invalid YAML: YAML aliases (*a) are not supported; write the value out"
    ]


def test_yaml_merge_keys_need_aliases_and_are_refused_too(tmp_path: Path) -> None:
    text = "base: &base {recursive: true}\ncameras:\n  - <<: *base\n    name: a\n"
    path = tmp_path / "config.yaml"
    assert _load_text(tmp_path, text) == [
        f"{path}:3:9: invalid YAML: YAML aliases (*base) are not supported; write the value out"
    ]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    (problem,) = _load_text(tmp_path, "a: " + "[" * 5000)
    assert problem == f"{path}:1:35: invalid YAML: nested deeper than 32 levels"


def test_a_file_larger_than_1_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    assert _load_text(tmp_path, "# padding\n" * 110_000) == [
        f"{path}: larger than 1 MiB; this is not a camwatch configuration"
    ]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("a: !!timestamp x\n", "1:4", "invalid value for !!timestamp: 'x'"),
        ("a: 2020-13-45\n", "1:4", "invalid value for !!timestamp: '2020-13-45'"),
        ("a: !!float x\n", "1:4", "invalid value for !!float: 'x'"),
        ("a: 1\nb: \x00\n", "2:4", "special characters are not allowed (#x0000)"),
    ],
)
def test_yaml_values_that_cannot_be_built_name_line_and_column(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = tmp_path / "config.yaml"
    assert _load_text(tmp_path, text) == [f"{path}:{where}: invalid YAML: {message}"]


def test_a_key_with_a_newline_stays_on_one_line(cams: Path) -> None:
    data = minimal(cams)
    data["cameras"][0]["bad\nkey"] = 1
    data["\x1b[31mred"] = 1
    assert sorted(problems(data)) == [
        "<root>['\\x1b[31mred']: unknown key (misspelt?)",
        "cameras[0]['bad\\nkey']: unknown key (misspelt?)",
    ]


def test_text_that_is_not_valid_unicode_is_refused(cams: Path) -> None:
    data = minimal(cams, caption={"user_prompt": "a\ud800b"})
    assert problems(data) == ["caption.user_prompt: not valid Unicode text (a lone surrogate)"]


# -- webhook secrets (audit finding 2) ------------------------------------------------------------


def _hook(secret: str) -> dict[str, Any]:
    return {"name": "ops", "url": "https://hooks.example.com/cw", "secret": secret}


@pytest.mark.parametrize("secret", ["", "   ", "${UNSET_VAR:-}", "${EMPTY}"])
def test_an_empty_webhook_secret_is_refused(cams: Path, secret: str) -> None:
    data = minimal(cams, webhooks=[_hook(secret)])
    assert problems(data, {"EMPTY": ""}) == [
        "webhooks[0].secret: empty; it would sign nothing (remove the key for unsigned webhooks)"
    ]


@pytest.mark.parametrize("secret", ["change-me", "CHANGE-ME", "${NOT_SET:-change-me}"])
def test_the_example_placeholder_secret_is_refused(cams: Path, secret: str) -> None:
    data = minimal(cams, webhooks=[_hook(secret)])
    assert problems(data) == [
        "webhooks[0].secret: 'change-me' is the example's placeholder; set a long random secret"
        " (e.g. openssl rand -hex 32)"
    ]


def test_a_short_webhook_secret_is_refused(cams: Path) -> None:
    data = minimal(cams, webhooks=[_hook("0123456789abcde"), {**_hook("x" * 16), "name": "b"}])
    assert problems(data) == [
        "webhooks[0].secret: shorter than 16 characters; a short secret can be guessed from one"
        " signed alert (e.g. openssl rand -hex 32)"
    ]


def test_the_example_has_no_public_fallback_secret(tmp_path: Path) -> None:
    text = (REPO / "config.example.yaml").read_text()
    assert "change-me" not in text
    assert not re.search(r"secret: \$\{[A-Z_]+:-", text)  # a default would be a public secret


# -- URLs in messages (audit finding 3) -----------------------------------------------------------


def test_a_bad_url_is_quoted_without_credentials_path_or_query(cams: Path) -> None:
    data = minimal(
        cams,
        caption={"base_url": "ftp://user:pa55@api.example.com:2121/v1?key=k3y"},
        webhooks=[
            {"name": "a", "url": "hooks.example.com/api/webhook/T0KEN"},
            {"name": "b", "url": "https://user:pa55@/api/webhook/T0KEN"},
            {"name": "c", "url": "https://[::1/T0KEN"},
        ],
    )
    found = problems(data)
    assert sorted(found) == [
        "caption.base_url: expected an http(s) URL, got 'ftp://api.example.com:2121'",
        "webhooks[0].url: expected an http(s) URL, got one without http:// or https://",
        "webhooks[1].url: expected an http(s) URL, got 'https://' without a host",
        "webhooks[2].url: expected an http(s) URL, got one that cannot be parsed",
    ]
    for secret in ("pa55", "T0KEN", "k3y", "user"):
        assert secret not in "\n".join(found)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com:8443/api/webhook/T?x=1#f", "https://hooks.example.com:8443"),
        ("http://[fe80::1%25eth0]:80/x", "http://[fe80::1%25eth0]:80"),
        ("HTTPS://Hooks.Example.COM/x", "https://hooks.example.com"),
        ("http://h:notaport/x", "http://h"),
    ],
)  # fmt: skip
def test_scrub_url_keeps_scheme_host_and_port_only(url: str, shown: str) -> None:
    from camwatch.config import scrub_url

    assert scrub_url(url) == shown


# -- a config file with secrets readable by others (audit finding 4) ------------------------------


def _write(tmp_path: Path, cams: Path, body: str, mode: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"cameras:\n  - name: front\n    path: {cams / 'front'}\n{body}")
    path.chmod(mode)
    return path


SECRETS_INLINE = """\
caption: {api_key: sk-inline-123}
webhooks:
  - {name: a, url: "https://u:p@h.example/x", secret: "${HOOK:-0123456789abcdef0}"}
  - {name: b, url: "https://h.example/x?token=abc", headers: {Authorization: Bearer x}}
  - {name: c, url: "${URL}", secret: "${HOOK}", headers: {X-Team: night}}
notify:
  - {name: n, urls: ["ntfys://ntfy.sh/topic", "${APPRISE}"]}
"""


def test_secrets_in_a_file_readable_by_others_are_reported(cams: Path, tmp_path: Path) -> None:
    from camwatch.config import readable_secrets

    path = _write(tmp_path, cams, SECRETS_INLINE, 0o644)
    found = readable_secrets(path)
    assert found is not None
    assert found.fields == [
        "caption.api_key",
        "webhooks[0].url",
        "webhooks[0].secret",
        "webhooks[1].url",
        "webhooks[1].headers.Authorization",
        "notify[0].urls[0]",
    ]
    assert found.mode == 0o644
    assert found.fix == f"chmod o-r {path}"
    assert found.message == (
        f"{path}: readable by every user (mode 0644) and it holds secrets (caption.api_key,"
        " webhooks[0].url, webhooks[0].secret, webhooks[1].url, webhooks[1].headers.Authorization,"
        f" notify[0].urls[0]); run: chmod o-r {path}"
    )
    assert "sk-inline-123" not in found.message


def test_a_private_file_or_one_without_inline_secrets_is_fine(cams: Path, tmp_path: Path) -> None:
    from camwatch.config import readable_secrets

    assert readable_secrets(_write(tmp_path, cams, SECRETS_INLINE, 0o640)) is None
    only_variables = "caption: {api_key: '${KEY}'}\nwebhooks: [{name: a, url: 'https://h/x'}]\n"
    assert readable_secrets(_write(tmp_path, cams, only_variables, 0o644)) is None
    assert readable_secrets(tmp_path / "missing.yaml") is None


# -- link-local and plaintext addresses (audit finding 5) -----------------------------------------


def test_metadata_and_plaintext_addresses_are_warned_about(cams: Path) -> None:
    from camwatch.config import address_warnings

    data = minimal(
        cams,
        caption={"base_url": "http://192.168.1.10:8080"},
        webhooks=[
            {"name": "a", "url": "http://169.254.169.254/latest/meta-data"},
            {"name": "b", "url": "http://[fe80::1]:8080/x"},
            {"name": "c", "url": "http://2852039166/x"},  # 169.254.169.254 as one number
            {"name": "d", "url": "http://[::ffff:169.254.1.1]/x"},
            {"name": "e", "url": "https://hooks.example.com/x"},
        ],
        notify=[{"name": "n", "urls": ["json://169.254.169.254/x", "discord://id/token"]}],
    )
    metadata = "a link-local address, where cloud metadata services answer"
    assert address_warnings(parse_config(data, {})) == [
        "caption.base_url: plain http:// to a host that is not this machine (192.168.1.10):"
        " the API key would travel in clear; use https://",
        f"webhooks[0].url: 169.254.169.254 is {metadata}",
        f"webhooks[1].url: fe80::1 is {metadata}",
        f"webhooks[2].url: 169.254.169.254 is {metadata}",
        f"webhooks[3].url: 169.254.1.1 is {metadata}",
        f"notify[0].urls[0]: 169.254.169.254 is {metadata}",
    ]


@pytest.mark.parametrize(
    "base_url",
    ["https://security.memories.ai", "http://127.0.0.1:9", "http://127.8.0.1", "http://[::1]:1",
     "http://localhost:11434/v1", "http://LOCALHOST."],
)  # fmt: skip
def test_loopback_or_https_caption_api_needs_no_warning(cams: Path, base_url: str) -> None:
    from camwatch.config import address_warnings

    config = parse_config(minimal(cams, caption={"base_url": base_url}), {})
    assert address_warnings(config) == []


def test_scrub_url_keeps_the_path_only_when_asked() -> None:
    from camwatch.config import scrub_url

    url = "http://user:pw@api.example.com:8080/v1/?key=k3y"
    assert scrub_url(url, keep_path=True) == "http://api.example.com:8080/v1"
    assert scrub_url(url) == "http://api.example.com:8080"
    assert scrub_url("api.example.com/T0KEN") == ""  # nothing known to be safe to show


def test_a_standard_webhooks_secret_is_measured_by_its_key(cams: Path) -> None:
    import base64

    short = "whsec_" + base64.b64encode(b"k" * 12).decode()  # 22 characters, a 12-byte key
    long = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert problems(minimal(cams, webhooks=[_hook(short)])) == [
        "webhooks[0].secret: shorter than 16 characters; a short secret can be guessed from one"
        " signed alert (e.g. openssl rand -hex 32)"
    ]
    assert parse_config(minimal(cams, webhooks=[_hook(long)]), {}).webhooks[0].secret


def test_many_problems_are_cut_short(cams: Path) -> None:
    data = {"cameras": [{"name": "c", "path": str(cams / "front"), "bad": 1}] * 200}
    found = problems(data)
    assert len(found) == 51
    assert found[-1] == "<root>: 150 more problem(s) not shown"


def test_a_tree_nested_too_deeply_is_refused(cams: Path) -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    assert problems(minimal(cams, extra=deep)) == [
        "extra" + "[0]" * 31 + ": nested deeper than 32 levels"
    ]


def test_an_api_key_file_that_is_not_utf8(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfe")
    caption = CaptionConfig.model_validate({"api_key_file": str(key_file)})
    with pytest.raises(ConfigError) as info:
        resolve_api_key(caption, {})
    assert info.value.problems == [f"caption.api_key_file: {str(key_file)!r} is not UTF-8 text"]


def test_a_key_that_is_not_valid_unicode_is_refused(cams: Path) -> None:
    data = minimal(cams)
    data["caption"] = {"a\udc80": 1}
    assert problems(data) == ["caption['a\\udc80']: not valid Unicode text (a lone surrogate)"]
