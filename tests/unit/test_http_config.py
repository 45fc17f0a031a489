"""The HTTP listener's settings: `http.listen` parsed, which addresses are loopback, the token
required off loopback and checked; and the credentials a request may carry."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from camwatch.config import parse_config
from camwatch.config.listen import Listen, parse_listen
from camwatch.errors import ConfigError
from camwatch.http_server import authorized
from camwatch.service import secrets_of

TOKEN = "unit-http-token-3f9a0c71"


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:9108", "127.0.0.1", 9108, True),
        ("127.8.9.10:80", "127.8.9.10", 80, True),
        ("localhost:9108", "localhost", 9108, True),
        ("[::1]:9108", "::1", 9108, True),
        ("0.0.0.0:9108", "0.0.0.0", 9108, False),
        ("[::]:9108", "::", 9108, False),
        ("192.168.1.5:1", "192.168.1.5", 1, False),
        ("[fe80::1%eth0]:9108", "fe80::1%eth0", 9108, False),
        ("cams.example.lan:65535", "cams.example.lan", 65535, False),
        (" 127.0.0.1:0 ", "127.0.0.1", 0, True),  # 0: any free port
        ("[::ffff:127.0.0.1]:9108", "::ffff:127.0.0.1", 9108, False),  # not judged loopback
    ],
)
def test_listen_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    listen = parse_listen(text)
    assert listen == Listen(host, port)
    assert listen.loopback is loopback
    assert parse_listen(str(listen)) == listen  # what the config keeps reads back the same


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("9108", "expected host:port"),
        (9108, "expected host:port"),
        (None, "expected host:port"),
        (":9108", "give the host"),
        ("::1:9108", "an IPv6 address goes in brackets"),
        ("[::1]", "expected [IPv6 address]:port"),
        ("[127.0.0.1]:80", "brackets are for an IPv6 address"),
        ("[nonsense]:80", "not an IPv6 address in brackets"),
        ("127.0.0.1:65536", "a port from 0 to 65535"),
        ("127.0.0.1:-1", "a port from 0 to 65535"),
        ("127.0.0.1:http", "a port from 0 to 65535"),
        ("127.0.0.1:", "a port from 0 to 65535"),
        ("127.0.0.1:٩١", "a port from 0 to 65535"),  # Arabic-Indic digits: not a port
        ("999.1.1.1:80", "not an IP address or a host name"),
        ("bad_host!:80", "not an IP address or a host name"),
        ("-lead.example:80", "not an IP address or a host name"),
    ],
)
def test_listen_mistakes_are_named(value: Any, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        parse_listen(value)


def _problems(tmp_path: Path, http: Any) -> list[str]:
    data = {"cameras": [{"name": "front", "path": str(tmp_path)}], "http": http}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    return caught.value.problems


def _config(tmp_path: Path, http: Any) -> Any:
    return parse_config({"cameras": [{"name": "front", "path": str(tmp_path)}], "http": http})


def test_without_http_there_is_no_listener(tmp_path: Path) -> None:
    assert parse_config({"cameras": [{"name": "front", "path": str(tmp_path)}]}).http is None
    assert _config(tmp_path, None).http is None


def test_the_default_listener_is_loopback_without_a_token(tmp_path: Path) -> None:
    http = _config(tmp_path, {}).http
    assert http.listen == "127.0.0.1:9108" and http.token is None
    assert http.address == Listen("127.0.0.1", 9108)


def test_a_listener_off_loopback_needs_a_token(tmp_path: Path) -> None:
    for listen in ("0.0.0.0:9108", "[::]:9108", "192.168.1.5:9108", "cams.lan:9108"):
        problems = _problems(tmp_path, {"listen": listen})
        assert problems == [
            f"http.token: required when listen ({listen}) is not a loopback address: whoever"
            " can reach it could read every caption (e.g. token: ${CAMWATCH_HTTP_TOKEN}, made"
            " with openssl rand -hex 32)"
        ]
    http = _config(tmp_path, {"listen": "[::]:9108", "token": TOKEN}).http
    assert http.token.get_secret_value() == TOKEN
    assert str(http.address) == "[::]:9108"


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("short-token", "shorter than 16 characters"),
        ("with a space in the token", "printable ASCII without spaces"),
        ("tökén-with-accents-1234", "printable ASCII without spaces"),
        ("line\nbreak-in-the-token", "printable ASCII without spaces"),
    ],
)
def test_bad_tokens_are_refused_without_showing_them(tmp_path: Path, token: str, said: str) -> None:
    problems = _problems(tmp_path, {"listen": "127.0.0.1:9108", "token": token})
    assert len(problems) == 1
    assert problems[0].startswith("http.token: ") and said in problems[0]
    assert token.strip() == "" or token not in problems[0]


def test_a_bad_listen_names_its_field(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"listen": "::1:9108"}) == [
        "http.listen: an IPv6 address goes in brackets, e.g. [::1]:9108, got '::1:9108'"
    ]
    assert _problems(tmp_path, {"listen": "127.0.0.1:9108", "tokn": TOKEN})[0].startswith(
        "http.tokn: "
    )


def test_the_token_is_a_secret_for_the_log(tmp_path: Path) -> None:
    config = _config(tmp_path, {"token": TOKEN})
    assert TOKEN in secrets_of(config)
    assert TOKEN not in repr(config)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer   {TOKEN}  ", True),
        (_basic("anyone", TOKEN), True),
        (_basic("", TOKEN), True),
        ("BASIC " + base64.b64encode(f"a:b:{TOKEN}".encode()).decode(), False),
        (_basic(TOKEN, "x"), False),  # the token as the user name is not the password
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer", False),
        (f"Token {TOKEN}", False),
        ("Basic !!!", False),
        ("Basic " + base64.b64encode(TOKEN.encode()).decode(), False),  # no colon
        ("", False),
        (None, False),
    ],
)
def test_credentials(header: str | None, ok: bool) -> None:
    assert authorized(TOKEN.encode(), header) is ok


def test_without_a_token_everything_is_served() -> None:
    assert authorized(None, None)
    assert authorized(None, "Bearer anything")
