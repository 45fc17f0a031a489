"""End to end: the commands besides the daemon (`check-config`, `test-rules`, `caption`,
`run --once`, `demo`), each run as `python -m camwatch ...`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    API_KEY,
    HOOK_SECRET,
    ConfigWriter,
    Tree,
    alert_keys,
    assert_alert,
    drop,
    image,
    run_cli,
)

EX_CONFIG = 78


# -- check-config ------------------------------------------------------------------------------


def test_check_config_prints_a_summary(config: ConfigWriter) -> None:
    path = config.write()
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{path}: OK" in out
    for name in ("frontdoor", "driveway", "person-down", "package", "vehicle", "main"):
        assert name in out
    assert API_KEY not in out + result.stderr
    assert HOOK_SECRET not in out + result.stderr


def test_check_config_warns_about_a_missing_camera_folder_and_passes(
    config: ConfigWriter, tree: Tree
) -> None:
    data = config.data()
    data["cameras"][1]["path"] = str(tree.root / "usb" / "driveway")  # a disk not there yet
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == 0, result.stderr
    assert "camera frontdoor:" in result.stdout and "watch=auto: inotify on" in result.stdout
    assert (
        f"warning: cameras[1].path: {str(tree.root / 'usb' / 'driveway')!r} is missing;"
        in result.stderr
    )


def test_check_config_default_path_is_camwatch_config(config: ConfigWriter) -> None:
    path = config.write()
    result = run_cli("check-config", env={"CAMWATCH_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert f"{path}: OK" in result.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["rules"][0].update(cooldown="soon"),
            ["rules[0].cooldown: expected a duration, got 'soon'"],
        ),
        (
            lambda d: d["caption"].update(concurrncy=4),
            ["caption.concurrncy: unknown key"],
        ),
        (
            lambda d: d["webhooks"][0].update(secret="${CAMWATCH_E2E_NOT_SET}"),
            ["webhooks[0].secret: environment variable CAMWATCH_E2E_NOT_SET is not set"],
        ),
        (
            # Two problems in one file: both are reported.
            lambda d: (d.update(debounce="later"), d["rules"][2].update(severity="loud")),
            ["debounce: expected a duration, got 'later'", "rules[2].severity"],
        ),
    ],
    ids=["bad-duration", "unknown-key", "missing-variable", "two-problems"],
)
def test_check_config_refuses_a_bad_file_with_the_field_path(
    config: ConfigWriter, change, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMWATCH_E2E_NOT_SET", raising=False)
    data = config.data()
    change(data)
    path = config.write(data)
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_names_file_line_and_column_of_bad_yaml(config: ConfigWriter) -> None:
    path = config.write_text("caption:\n  base_url: [unclosed\ncameras: []\n")
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == EX_CONFIG
    assert f"{path}:" in result.stderr
    assert "invalid YAML" in result.stderr


def test_run_refuses_a_bad_file_with_78(config: ConfigWriter) -> None:
    data = config.data()
    data["rules"][0]["cooldown"] = "soon"
    result = run_cli("run", "-c", str(config.write(data)), timeout=30)
    assert result.returncode == EX_CONFIG
    assert "rules[0].cooldown: expected a duration, got 'soon'" in result.stderr


# -- test-rules --------------------------------------------------------------------------------

CAPTIONS = [
    "A person lying on the ground, not moving.",
    "Nobody is lying on the ground; a red car is parked.",
    "A statue of a man who collapsed.",
    "A quiet night.",
]


def _rules_json(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_test_rules_json_from_arguments(config: ConfigWriter) -> None:
    result = run_cli("test-rules", "-c", str(config.write()), "--json", *CAPTIONS)
    assert result.returncode == 0, result.stderr
    objects = _rules_json(result.stdout)
    assert [o["caption"] for o in objects] == CAPTIONS
    # Camera filters are ignored without --camera: `vehicle` (driveway only) matches.
    assert [o["matched"] for o in objects] == [
        [{"rule": "person-down", "phrases": ["lying on the ground"]}],
        [{"rule": "vehicle", "phrases": ["car"]}],
        [],
        [],
    ]


def test_test_rules_json_from_stdin_as_one_camera(config: ConfigWriter) -> None:
    path = str(config.write())
    text = "\n".join(CAPTIONS) + "\n"
    front = run_cli("test-rules", "-c", path, "--json", "--camera", "frontdoor", input=text)
    assert front.returncode == 0, front.stderr
    assert [o["matched"] for o in _rules_json(front.stdout)] == [
        [{"rule": "person-down", "phrases": ["lying on the ground"]}],
        [],  # vehicle is for the driveway only
        [],
        [],
    ]
    drive = run_cli("test-rules", "-c", path, "--json", "--camera", "driveway", input=text)
    assert [o["matched"] for o in _rules_json(drive.stdout)][1] == [
        {"rule": "vehicle", "phrases": ["car"]}
    ]


def test_test_rules_text_says_which_phrase(config: ConfigWriter) -> None:
    path = str(config.write())
    result = run_cli("test-rules", "-c", path, "A courier dropped a parcel.")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    package = next(line for line in lines if line.startswith("package:"))
    assert "MATCH" in package and "no match" not in package
    assert "'parcel'" in result.stdout
    person = next(line for line in lines if line.startswith("person-down:"))
    assert "no match" in person
    unknown = run_cli("test-rules", "-c", path, "--camera", "garage", "a car")
    assert unknown.returncode != 0
    assert "garage" in unknown.stderr


# -- caption -------------------------------------------------------------------------------------


def test_caption_prints_the_caption(
    tree: Tree, api: StandinCaptionAPI, config: ConfigWriter
) -> None:
    path = drop(tree.outside / "one.jpg", image("A fox crossing the lawn at dusk."))
    result = run_cli("caption", str(path), "-c", str(config.write()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "A fox crossing the lawn at dusk."
    assert api.count == 1
    assert api.requests[0].file_name == "one.jpg"

    broken = drop(tree.outside / "broken.jpg", image("cut")[:100])
    result = run_cli("caption", str(broken), "-c", str(config.write()))
    assert result.returncode != 0
    assert "broken.jpg" in result.stderr
    assert api.count == 1  # nothing uploaded

    api.fail_next(1, 401)
    result = run_cli("caption", str(path), "-c", str(config.write()))
    assert result.returncode != 0
    assert "401" in result.stderr
    assert API_KEY not in result.stderr


# -- run --once ----------------------------------------------------------------------------------


def test_run_once_processes_what_is_there_delivers_and_exits(
    tree: Tree, api: StandinCaptionAPI, hooks: WebhookReceiver, config: ConfigWriter
) -> None:
    parcel_data = image("A parcel by the door.")
    parcel = drop(tree.frontdoor / "old" / "parcel.jpg", parcel_data)
    os.utime(parcel, (1_700_000_000, 1_700_000_000))  # an old file: no quiet period needed
    car_data = image("A car in the driveway.")
    car = drop(tree.driveway / "car.jpg", car_data)  # a new file: debounced first
    quiet = drop(tree.driveway / "quiet.jpg", image("An empty street."))
    hooks.fail_next(1, 503)  # delivery must be retried before --once exits

    result = run_cli("run", "-c", str(config.write()), "--once", timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e for e in events if e["event"] == "once_finished"]
    # Delivered before exiting: no waiting here.
    assert alert_keys(hooks.delivered) == sorted(
        [("package", "frontdoor", str(parcel)), ("vehicle", "driveway", str(car))]
    )
    by_image = {r.json["image"]: r for r in hooks.delivered}
    assert_alert(
        by_image[str(parcel)],
        rule="package",
        camera="frontdoor",
        image=parcel,
        matched=["parcel"],
        data=parcel_data,
    )
    assert_alert(
        by_image[str(car)],
        rule="vehicle",
        camera="driveway",
        image=car,
        matched=["car"],
        data=car_data,
    )
    assert sorted(r.file_name for r in api.requests) == ["car.jpg", "parcel.jpg", "quiet.jpg"]
    assert quiet.exists()

    # A second --once has nothing left to do.
    again = run_cli("run", "-c", str(config.write()), "--once", timeout=60)
    assert again.returncode == 0, again.stderr[-3000:]
    assert api.count == 3
    assert len(hooks.received) == 3  # two delivered, one refused with 503


# -- demo ----------------------------------------------------------------------------------------


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run_cli("demo", env={"TMPDIR": str(tmp_path)}, timeout=90)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ALERT" in result.stdout
    assert "signature valid" in result.stdout
    assert "INVALID" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # the demo cleaned up after itself


def test_config_example_is_valid_as_it_is_once_the_key_is_set(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    for camera in ("frontdoor", "driveway"):
        (tmp_path / "cams" / camera).mkdir(parents=True)
    env = {
        "CAMWATCH_API_KEY": "k-123456",
        "CAMWATCH_CAMERAS": str(tmp_path / "cams"),  # the example's folders are under /srv
        "CAMWATCH_STATE_DIR": str(tmp_path / "state"),
    }
    result = run_cli("check-config", "-c", str(example), env=env)
    assert result.returncode == 0, result.stderr
    assert "k-123456" not in result.stdout


# -- the security audit: hostile files, secrets, what is printed ----------------------------------

_LONG = "a" * 256

_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (lambda c: (c + "# caf\xe9\n").encode("latin-1"), ": not UTF-8 text (byte 0xe9)"),
        (
            lambda c: (c + f"state_dir: /tmp/{_LONG}/state\n").encode(),
            "state_dir: a path component is longer than 255 bytes",
        ),
        (
            lambda c: c.replace("/cams/frontdoor\n", f"/cams/frontdoor/{_LONG}\n").encode(),
            "cameras[0].path: a path component is longer than 255 bytes",
        ),
        (
            lambda c: (c + f"debounce: 1{'0' * 400}\n").encode(),
            "debounce: expected a duration of at most 100 years",
        ),
        (lambda c: _BOMB.encode(), "YAML aliases (*a) are not supported"),
    ],
    ids=["not-utf8", "long-state-dir", "long-camera-path", "huge-duration", "alias-bomb"],
)
def test_check_config_and_run_refuse_a_hostile_file_with_78(
    config: ConfigWriter, text, expected: str
) -> None:
    path = config.write()
    path.write_bytes(text(path.read_text()))
    for command in (("check-config",), ("run", "--once")):
        result = run_cli(*command, "-c", str(path), timeout=30)
        assert result.returncode == EX_CONFIG, result.stdout + result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("${CAMWATCH_E2E_NOT_SET:-}", "webhooks[0].secret: empty"),
        ("${CAMWATCH_E2E_NOT_SET:-change-me}", "webhooks[0].secret: 'change-me' is the example's"),
        ("short-secret", "webhooks[0].secret: shorter than 16 characters"),
    ],
)
def test_check_config_refuses_a_secret_that_signs_nothing(
    config: ConfigWriter, secret: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMWATCH_E2E_NOT_SET", raising=False)
    data = config.data()
    data["webhooks"][0]["secret"] = secret
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert expected in result.stderr
    assert "signed" not in result.stdout


def test_check_config_prints_no_url_credentials_path_or_query(
    config: ConfigWriter, api: StandinCaptionAPI
) -> None:
    data = config.data()
    port = api.url.rsplit(":", 1)[1]
    data["caption"]["base_url"] = f"http://apiuser:apipw@127.0.0.1:{port}/?k=apiq"
    data["webhooks"][0]["url"] = (
        "https://hookuser:hookpw@hooks.example.com:8443/api/webhook/T0KEN?q=1"
    )
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == 0, result.stderr
    assert f"  caption: http://127.0.0.1:{port}/v1/understand/uploadImg" in result.stdout
    assert "  webhook main: https://hooks.example.com:8443 signed" in result.stdout
    for leak in ("apiuser", "apipw", "apiq", "hookuser", "hookpw", "T0KEN", "q=1"):
        assert leak not in result.stdout + result.stderr

    data["webhooks"][0]["url"] = "ftp://hookuser:hookpw@hooks.example.com/api/webhook/T0KEN"
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == EX_CONFIG
    assert "webhooks[0].url: expected an http(s) URL, got 'ftp://hooks.example.com'" in (
        result.stderr
    )
    for leak in ("hookuser", "hookpw", "T0KEN"):
        assert leak not in result.stdout + result.stderr


def test_check_config_warns_when_secrets_in_the_file_are_readable_by_others(
    config: ConfigWriter,
) -> None:
    data = config.data()
    data["caption"]["api_key"] = API_KEY  # inline, not from the environment
    path = config.write(data)
    path.chmod(0o644)
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {path}: readable by every user (mode 0644) and it holds secrets"
        f" (caption.api_key); run: chmod o-r {path}"
    ) in result.stderr
    assert API_KEY not in result.stdout + result.stderr

    path.chmod(0o640)
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "readable by every user" not in result.stderr


def test_run_logs_config_readable_by_others(config: ConfigWriter) -> None:
    data = config.data()
    data["caption"]["api_key"] = API_KEY
    path = config.write(data)
    path.chmod(0o644)
    result = run_cli("run", "-c", str(path), "--once", timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (warning,) = [e for e in events if e["event"] == "config_readable_by_others"]
    assert warning["level"] == "warning"
    assert warning["path"] == str(path)
    assert warning["fix"] == f"chmod o-r {path}"
    assert warning["secrets"] == ["caption.api_key"]
    assert API_KEY not in result.stderr


def test_check_config_warns_about_metadata_and_plaintext_addresses(
    config: ConfigWriter,
) -> None:
    data = config.data()
    data["caption"]["base_url"] = "http://192.0.2.10:8080"
    data["webhooks"][0]["url"] = "http://169.254.169.254/latest/meta-data/"
    data["notify"] = [{"name": "phones", "urls": ["json://[fe80::1]/x"]}]
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == 0, result.stderr
    assert (
        "warning: caption.base_url: plain http:// to a host that is not this machine"
        " (192.0.2.10): the API key would travel in clear; use https://"
    ) in result.stderr
    assert "warning: webhooks[0].url: 169.254.169.254 is a link-local address" in result.stderr
    assert "warning: notify[0].urls[0]: fe80::1 is a link-local address" in result.stderr
