"""The caption API client against the stand-in API on 127.0.0.1: wire format, error classes,
retry policy, Retry-After, shutdown, and the API key staying out of logs and errors."""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from camwatch.caption import CaptionClient, CaptionResult, parse_retry_after
from camwatch.config import CaptionConfig
from camwatch.errors import (
    AuthError,
    CaptionAborted,
    CaptionError,
    ConfigError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.prompts import Prompts, content_type_for, public_url_for
from camwatch.testing import StandinCaptionAPI, jpeg_with_caption, sample_images

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

KEY = "sk-test-7f3a9c1e5b2d4f60"  # distinctive, so a leak anywhere is easy to spot
PROMPTS = Prompts("What's happening in this picture?", "You are an image system.", False)
ENDPOINT = "/v1/understand/uploadImg"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02}


@pytest.fixture
def api() -> Iterator[StandinCaptionAPI]:
    """Yield a running stand-in API that wants KEY."""
    with StandinCaptionAPI(captions={"known.jpg": "A known scene."}, api_key=KEY) as server:
        yield server


@pytest.fixture
def make_client(api: StandinCaptionAPI) -> Iterator[Callable[..., CaptionClient]]:
    """Return `make(key=KEY, stop=None, retry={...}, **caption settings)`; every client it makes
    is closed at the end of the test."""
    clients: list[CaptionClient] = []

    def make(
        key: str = KEY,
        stop: threading.Event | None = None,
        retry: dict[str, Any] | None = None,
        **settings: Any,
    ) -> CaptionClient:
        config = CaptionConfig(
            base_url=settings.pop("base_url", api.url),
            retry={"attempts": 3, **FAST, **(retry or {})},
            **settings,
        )
        client = CaptionClient(config, key, stop=stop)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def jpeg(caption: str = "A person walks by.") -> bytes:
    return jpeg_with_caption(caption)


def gaps(api: StandinCaptionAPI) -> list[float]:
    """Return the seconds between consecutive recorded requests."""
    times = [r.time for r in api.requests]
    return [b - a for a, b in itertools.pairwise(times)]


def free_port() -> int:
    """Return a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the wire format -------------------------------------------------------------------------


def test_upload_sends_two_parts_req_then_file_with_the_raw_key(api, make_client) -> None:
    data = jpeg("A cat sits on the mat.")
    result = make_client().caption_file(data, "12-00-01.jpg", PROMPTS)

    assert result.text == "A cat sits on the mat."
    assert result.tokens_total == result.tokens_input + result.tokens_output > 0
    (req,) = api.requests
    assert req.status == 200
    assert req.method == "POST"
    assert req.path == ENDPOINT
    assert req.headers["Authorization"] == KEY  # raw: no "Bearer"
    assert req.content_type.startswith("multipart/form-data; boundary=")
    assert req.parts == ["req", "file"]
    assert req.part_filenames == ["req.json", "12-00-01.jpg"]
    assert req.part_types == ["application/json", "image/jpeg"]
    assert req.json == {
        "user_prompt": PROMPTS.user_prompt,
        "system_prompt": PROMPTS.system_prompt,
        "thinking": False,
    }
    assert list(req.json) == ["user_prompt", "system_prompt", "thinking"]
    assert req.url is None
    assert req.file_size == len(data)
    assert req.sha256 == hashlib.sha256(data).hexdigest()


def test_png_upload_sends_the_base_name_and_image_png(api, make_client) -> None:
    _, png, _ = next(s for s in sample_images() if s[0].endswith(".png"))
    make_client().caption_file(png, "sub/dir/Night.PNG", PROMPTS)

    (req,) = api.requests
    assert req.file_name == "Night.PNG"
    assert req.file_content_type == "image/png"
    assert req.sha256 == hashlib.sha256(png).hexdigest()


def test_prompts_and_thinking_are_sent_as_given(api, make_client) -> None:
    prompts = Prompts("Qu'y a-t-il ? « été »", "Tu es un système.", True)
    make_client().caption_file(jpeg(), "a.jpg", prompts)

    assert api.requests[0].json == {
        "user_prompt": "Qu'y a-t-il ? « été »",
        "system_prompt": "Tu es un système.",
        "thinking": True,
    }


def test_url_mode_sends_a_json_body_with_the_url(api, make_client) -> None:
    url = "https://cams.example.com/frontdoor/2026-11-23/known.jpg"
    result = make_client().caption_url(url, PROMPTS)

    assert result.text == "A known scene."
    (req,) = api.requests
    assert req.content_type == "application/json"
    assert req.parts == []
    assert req.headers["Authorization"] == KEY
    assert req.json == {
        "url": url,
        "user_prompt": PROMPTS.user_prompt,
        "system_prompt": PROMPTS.system_prompt,
        "thinking": False,
    }
    assert list(req.json) == ["url", "user_prompt", "system_prompt", "thinking"]


def test_the_endpoint_is_configurable(api, make_client) -> None:
    make_client(endpoint="/v1/understand/uploadImgFile").caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.requests[0].path == "/v1/understand/uploadImgFile"


def test_connections_are_reused(api, make_client) -> None:
    client = make_client()
    for i in range(5):
        client.caption_file(jpeg(f"scene {i}"), f"{i}.jpg", PROMPTS)
    assert len({r.client_port for r in api.requests}) == 1


def test_the_pool_holds_concurrency_connections(api, make_client, caplog) -> None:
    client = make_client(concurrency=4)
    api.latency = 0.1
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3):
                client.caption_file(jpeg(f"{n}-{i}"), f"{n}-{i}.jpg", PROMPTS)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="urllib3"):
        threads = [threading.Thread(target=work, args=(n,), name=f"w{n}") for n in range(4)]
        for thread in threads:
            thread.start()
        assert api.wait_in_flight(4, timeout=10)
        for thread in threads:
            thread.join(10)
    assert not errors
    assert api.count == 12
    assert len({r.client_port for r in api.requests}) <= 4
    assert "pool is full" not in caplog.text


# -- answers and their error classes ---------------------------------------------------------


@pytest.mark.parametrize("code", [0, "0", "0000", 200])
def test_every_documented_success_code_is_success(api, make_client, code) -> None:
    body = {"code": code, "msg": "success", "data": {"text": "Fine.", "token": {"input": 3}}}
    api.fail_next(1, status=200, body=body)
    result = make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert result == CaptionResult("Fine.", 3, 0, 3)


def test_missing_tokens_count_as_zero(api, make_client) -> None:
    api.fail_next(1, status=200, body={"code": 0, "msg": "success", "data": {"text": "Hi."}})
    assert make_client().caption_file(jpeg(), "a.jpg", PROMPTS) == CaptionResult("Hi.", 0, 0, 0)


@pytest.mark.parametrize("status", [400, 404, 413, 415, 422])
def test_permanent_statuses_fail_the_image_after_one_request(api, make_client, status) -> None:
    api.fail_next(5, status)
    with pytest.raises(PermanentCaptionError, match=f"HTTP {status} from caption API"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthError), (403, AuthError), (402, CreditsError)]
)
def test_auth_and_credit_statuses_stop_after_one_request(api, make_client, status, error) -> None:
    api.fail_next(5, status)
    with pytest.raises(error, match=f"HTTP {status}"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1


def test_a_wrong_key_is_an_auth_error_after_one_request(api, make_client) -> None:
    with pytest.raises(AuthError):
        make_client(key="not-the-key", retry={"attempts": 6}).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1
    assert api.requests[0].status == 401


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("0401", AuthError),
        (401, AuthError),
        ("0403", AuthError),
        (403, AuthError),
        ("0402", CreditsError),
        (402, CreditsError),
    ],
)
def test_auth_and_credit_codes_stop_after_one_request(api, make_client, code, error) -> None:
    api.fail_next(5, status=200, code=code)
    with pytest.raises(error, match=f"API code {code}"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(api, make_client, status) -> None:
    api.fail_next(2, status)
    result = make_client().caption_file(jpeg("After the storm."), "a.jpg", PROMPTS)
    assert result.text == "After the storm."
    assert [r.status for r in api.requests] == [status, status, 200]


def test_attempts_count_every_try_including_the_first(api, make_client) -> None:
    api.fail_next(10, 503)
    with pytest.raises(TransientCaptionError, match="HTTP 503 from caption API"):
        make_client(retry={"attempts": 3}).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 3


def test_one_attempt_means_no_retry(api, make_client) -> None:
    api.fail_next(10, 503)
    with pytest.raises(TransientCaptionError):
        make_client(retry={"attempts": 1}).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1


@pytest.mark.parametrize("code", ["0429", 429])
def test_busy_codes_are_transient(api, make_client, code) -> None:
    api.fail_next(3, status=200, code=code)
    with pytest.raises(TransientCaptionError, match="busy"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 3


def test_code_minus_one_is_retried_then_permanent(api, make_client) -> None:
    api.fail_next(3, status=200, body={"code": -1, "msg": "image decode failed", "data": None})
    with pytest.raises(PermanentCaptionError) as caught:
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert str(caught.value) == "API code -1: image decode failed"
    assert api.count == 3


def test_code_minus_one_then_success(api, make_client) -> None:
    api.fail_next(1, code=-1)
    assert make_client().caption_file(jpeg("Ok now."), "a.jpg", PROMPTS).text == "Ok now."
    assert api.count == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"",
        b'{"code": 0, "msg": "success"',
        b"[1, 2]",
        {"msg": "no code"},
        {"code": 0, "msg": "success", "data": None},
        {"code": 0, "msg": "success", "data": {"token": {"input": 1}}},
        {"code": "0000", "msg": "success", "data": {"text": None}},
    ],
    ids=["html", "empty", "cut", "list", "no-code", "no-data", "no-text", "null-text"],
)
def test_an_answer_that_is_not_the_api_json_is_transient(api, make_client, body) -> None:
    api.fail_next(3, status=200, body=body)
    with pytest.raises(TransientCaptionError, match="unexpected answer"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 3


def test_a_timeout_is_transient(api, make_client) -> None:
    api.latency = 1.0
    with pytest.raises(TransientCaptionError, match="timed out"):
        make_client(timeout=0.1, retry={"attempts": 2}).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.wait_in_flight(0, timeout=5)


def test_connection_refused_is_transient(make_client) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", retry={"attempts": 2})
    with pytest.raises(TransientCaptionError, match="cannot reach caption API"):
        client.caption_file(jpeg(), "a.jpg", PROMPTS)


def test_a_redirect_is_not_followed(api, make_client) -> None:
    api.fail_next(1, 302, headers={"Location": f"http://127.0.0.1:{free_port()}/x"})
    with pytest.raises(PermanentCaptionError, match="HTTP 302"):
        make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 1


def test_every_error_is_a_caption_error() -> None:
    for error in (TransientCaptionError, PermanentCaptionError, AuthError, CreditsError):
        assert issubclass(error, CaptionError)


# -- waiting between tries -------------------------------------------------------------------


def test_backoff_is_used_between_tries(api, make_client) -> None:
    api.fail_next(1, 503)
    make_client(retry={"backoff_initial": 0.6, "backoff_max": 0.8}).caption_file(
        jpeg(), "a.jpg", PROMPTS
    )
    (gap,) = gaps(api)
    assert 0.25 <= gap < 5


def test_retry_after_seconds_takes_precedence(api, make_client) -> None:
    api.fail_next(1, 503, headers={"Retry-After": "0.3"})
    make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    (gap,) = gaps(api)
    assert 0.25 <= gap < 5


def test_retry_after_is_capped_by_retry_after_max(api, make_client) -> None:
    api.fail_next(1, 429, headers={"Retry-After": "3600"})
    make_client(retry={"retry_after_max": 0.3}).caption_file(jpeg(), "a.jpg", PROMPTS)
    (gap,) = gaps(api)
    assert 0.25 <= gap < 5


def test_retry_after_as_an_http_date(api, make_client) -> None:
    # An HTTP date has whole seconds: "now + 2 s" lands 1 to 2 seconds ahead.
    api.fail_next(1, 503, headers={"Retry-After": email.utils.formatdate(time.time() + 2, True)})
    make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    (gap,) = gaps(api)
    assert 0.8 <= gap < 6


def test_retry_after_as_an_http_date_is_capped(api, make_client) -> None:
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    api.fail_next(1, 503, headers={"Retry-After": later})
    make_client(retry={"retry_after_max": 0.3}).caption_file(jpeg(), "a.jpg", PROMPTS)
    (gap,) = gaps(api)
    assert 0.25 <= gap < 5


def test_retry_after_also_applies_to_a_busy_code(api, make_client) -> None:
    api.fail_next(1, status=200, code="0429", headers={"Retry-After": "0.3"})
    make_client().caption_file(jpeg(), "a.jpg", PROMPTS)
    (gap,) = gaps(api)
    assert 0.25 <= gap < 5


def test_the_last_retry_after_is_on_the_transient_error(api, make_client) -> None:
    api.fail_next(1, 503, headers={"Retry-After": "0.01"})
    api.fail_next(1, 503, headers={"Retry-After": "3600"})
    with pytest.raises(TransientCaptionError) as caught:
        make_client(retry={"attempts": 2, "retry_after_max": 42}).caption_file(
            jpeg(), "a.jpg", PROMPTS
        )
    assert caught.value.retry_after == 42  # the server's 3600, capped


def test_a_transient_error_without_retry_after_has_none(api, make_client) -> None:
    api.fail_next(2, 503)
    with pytest.raises(TransientCaptionError) as caught:
        make_client(retry={"attempts": 2}).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert caught.value.retry_after is None


def test_stop_wakes_a_backoff_wait_and_aborts(api, make_client) -> None:
    stop = threading.Event()
    client = make_client(stop=stop, retry={"backoff_initial": 60, "backoff_max": 60})
    api.fail_next(1, 503)
    outcome: list[BaseException | CaptionResult] = []

    def call() -> None:
        try:
            outcome.append(client.caption_file(jpeg(), "a.jpg", PROMPTS))
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=call, name="caption-call")
    thread.start()
    assert api.wait_for(1, timeout=5)
    stopped = time.monotonic()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 2
    assert len(outcome) == 1 and isinstance(outcome[0], CaptionAborted)
    assert api.count == 1


def test_stop_also_wakes_a_retry_after_wait(api, make_client) -> None:
    stop = threading.Event()
    client = make_client(stop=stop)
    api.fail_next(1, 429, headers={"Retry-After": "120"})
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.caption_file(jpeg(), "a.jpg", PROMPTS)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=call, name="caption-call")
    thread.start()
    assert api.wait_for(1, timeout=5)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], CaptionAborted)


def test_a_stopped_client_makes_no_request(api, make_client) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(CaptionAborted):
        make_client(stop=stop).caption_file(jpeg(), "a.jpg", PROMPTS)
    assert api.count == 0


# -- the key stays secret --------------------------------------------------------------------


def test_the_key_never_appears_in_logs_errors_or_repr(api, make_client) -> None:
    echo = f"you sent Authorization: {KEY}"
    errors: list[BaseException] = []
    with capture_logs() as logs:
        client = make_client(retry={"attempts": 2})
        for status in (503, 401, 402, 400):
            tries = 2 if status == 503 else 1
            api.fail_next(tries, status, body={"code": -1, "msg": echo, "data": None})
            with pytest.raises(CaptionError) as caught:
                client.caption_file(jpeg(), "a.jpg", PROMPTS)
            errors.append(caught.value)
        api.fail_next(2, status=200, body={"code": -1, "msg": echo, "data": None})
        with pytest.raises(PermanentCaptionError) as caught:
            client.caption_url("https://x.example/a.jpg", PROMPTS)
        errors.append(caught.value)
        api.latency = 0.5
        with pytest.raises(TransientCaptionError) as caught:
            make_client(timeout=0.05, retry={"attempts": 2}).caption_file(jpeg(), "a", PROMPTS)
        errors.append(caught.value)
        api.latency = 0.0
        refused = make_client(base_url=f"http://127.0.0.1:{free_port()}", retry={"attempts": 2})
        with pytest.raises(TransientCaptionError) as caught:
            refused.caption_file(jpeg(), "a.jpg", PROMPTS)
        errors.append(caught.value)

    retries = [event for event in logs if event["event"] == "caption_retry"]
    assert retries, "expected caption_retry events"
    assert {"attempt", "wait", "reason"} <= set(retries[0])
    assert "***" in json.dumps([e for e in retries if "you sent" in e["reason"]], default=str)
    assert KEY not in json.dumps(logs, default=str)
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error) + str(error)
        assert KEY not in text
    assert KEY not in repr(client)
    assert KEY in api.requests[0].headers["Authorization"]  # it was sent, though
    assert api.wait_in_flight(0, timeout=5)


def test_a_key_that_cannot_be_a_header_is_a_config_error_without_the_key() -> None:
    config = CaptionConfig(base_url="http://127.0.0.1:9")
    for bad in (f"{KEY}\nX-Evil: 1", "", "clé-non-ascii"):
        with pytest.raises(ConfigError) as caught:
            CaptionClient(config, bad)
        assert KEY not in str(caught.value) and "clé" not in str(caught.value)


def test_an_injected_session_is_used_and_left_open(api) -> None:
    config = CaptionConfig(base_url=api.url, retry={"attempts": 1})
    with requests.Session() as session:
        session.headers["X-Test"] = "injected"
        client = CaptionClient(config, KEY, session=session)
        client.caption_file(jpeg(), "a.jpg", PROMPTS)
        client.close()
        client.close()  # idempotent
        assert api.requests[0].headers["X-Test"] == "injected"
        assert session.post(api.url + ENDPOINT, data=b"{}", timeout=5).status_code == 401


# -- plain functions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.png", "image/png"), ("A.PNG", "image/png"), ("a.jpg", "image/jpeg"),
     ("a.JPEG", "image/jpeg"), ("a.jpeg", "image/jpeg")],
)  # fmt: skip
def test_content_type_for(name, kind) -> None:
    assert content_type_for(name) == kind


def test_public_url_for_encodes_each_segment_and_keeps_slashes() -> None:
    template = "https://cams.example.com/{camera}/{relpath}"
    assert (
        public_url_for(template, "front door", "2026-11-23/12 00 01#1.jpg")
        == "https://cams.example.com/front%20door/2026-11-23/12%2000%2001%231.jpg"
    )
    assert (
        public_url_for(template, "cam", "été/snap+1?.jpg")
        == "https://cams.example.com/cam/%C3%A9t%C3%A9/snap%2B1%3F.jpg"
    )


def test_public_url_for_name_and_other_braces() -> None:
    template = "https://x.example/{camera}/{name}?path={relpath}&v={version}"
    assert (
        public_url_for(template, "cam", "a b/{camera}.jpg")
        == "https://x.example/cam/%7Bcamera%7D.jpg?path=a%20b/%7Bcamera%7D.jpg&v={version}"
    )


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("5", now) == 5
    assert parse_retry_after(" 0 ", now) == 0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0
    for bad in (None, "", "-1", "soon", "nan", "inf", "Mon, 99 Foo 2026 25:00:00 GMT"):
        assert parse_retry_after(bad, now) is None
