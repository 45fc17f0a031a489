"""The stand-ins of `camwatch.testing` themselves: the caption API's strict wire format, its
scripting, the webhook receiver going down and up on the same port, the JPEG caption comment, the
bundled samples, and the foreground command line."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import hmac
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import requests
from PIL import Image

from camwatch.testing import (
    DEFAULT_CAPTION,
    StandinCaptionAPI,
    WebhookReceiver,
    jpeg_caption,
    jpeg_with_caption,
    parse_multipart,
    sample_images,
)

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

KEY = "standin-test-key"
ENDPOINT = "/v1/understand/uploadImg"
REQ = {"user_prompt": "What?", "system_prompt": "You see.", "thinking": False}


@pytest.fixture
def api() -> Iterator[StandinCaptionAPI]:
    with StandinCaptionAPI(captions={"known.jpg": "A known scene."}, api_key=KEY) as server:
        yield server


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def plain_jpeg() -> bytes:
    return next(data for name, data, _ in sample_images() if name.endswith(".jpg"))


def upload(
    http: requests.Session,
    api: StandinCaptionAPI,
    files: list[tuple[str, Any]] | None = None,
    key: str | None = KEY,
    **kwargs: Any,
) -> requests.Response:
    """POST a multipart upload (default: a well-formed one) and return the response."""
    if files is None and "data" not in kwargs:
        files = [
            ("req", ("req.json", json.dumps(REQ), "application/json")),
            ("file", ("snap.jpg", plain_jpeg(), "image/jpeg")),
        ]
    headers = {"Authorization": key} if key is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return http.post(api.url + ENDPOINT, files=files, headers=headers, timeout=10, **kwargs)


# -- the caption API: what it accepts ---------------------------------------------------------


def test_a_well_formed_upload_gets_the_documented_answer(api, http) -> None:
    response = upload(http, api)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    body = response.json()
    assert body["code"] == 0 and body["msg"] == "success"
    token = body["data"]["token"]
    assert token["total"] == token["input"] + token["output"] > 0
    (req,) = api.requests
    assert req.parts == ["req", "file"]
    assert req.part_filenames == ["req.json", "snap.jpg"]
    assert req.part_types == ["application/json", "image/jpeg"]
    assert req.json == REQ
    assert req.sha256 == hashlib.sha256(plain_jpeg()).hexdigest()
    assert req.file_size == len(plain_jpeg())
    assert req.authorization == KEY
    assert req.status == 200 and req.error is None


@pytest.mark.parametrize("key", [None, "", "wrong", f"Bearer {KEY}"])
def test_a_missing_or_wrong_key_gets_401(api, http, key) -> None:
    response = upload(http, api, key=key)
    assert response.status_code == 401
    assert response.json() == {"code": "0401", "msg": "unauthorized", "data": None}


def test_api_key_none_accepts_any_key(http) -> None:
    with StandinCaptionAPI(api_key=None) as server:
        assert upload(http, server, key="anything").status_code == 200
        assert upload(http, server, key=None).status_code == 401


def _files(**change: Any) -> list[tuple[str, Any]]:
    req = ("req", ("req.json", json.dumps(REQ), "application/json"))
    file = ("file", ("snap.jpg", plain_jpeg(), "image/jpeg"))
    parts = {"req": req, "file": file}
    for name, value in change.items():
        parts[name] = value
    return [p for p in parts.values() if p is not None]


@pytest.mark.parametrize(
    ("files", "status", "reason"),
    [
        (list(reversed(_files())), 400, "req then file"),
        (_files(req=None), 400, "req then file"),
        (_files(file=None), 400, "req then file"),
        ([*_files(), ("extra", ("x.txt", b"x", "text/plain"))], 400, "req then file"),
        (_files(req=("req", ("req.txt", json.dumps(REQ), "application/json"))), 400, "req.json"),
        (_files(req=("req", ("req.json", json.dumps(REQ), "text/plain"))), 400, "json"),
        (_files(req=("req", ("req.json", "{not json", "application/json"))), 400, "not valid"),
        (_files(req=("req", ("req.json", '{"user_prompt": "x"}', "application/json"))), 400,
         "missing"),
        (_files(req=("req", ("req.json", json.dumps({**REQ, "url": "http://x/a.jpg"}),
                             "application/json"))), 400, "unexpected"),
        (_files(req=("req", ("req.json", json.dumps({**REQ, "thinking": "no"}),
                             "application/json"))), 400, "thinking"),
        (_files(file=("file", ("snap.gif", b"GIF89a", "image/gif"))), 415, "unsupported"),
        (_files(file=("file", ("snap.jpg", b"not a jpeg", "image/jpeg"))), 400, "not image"),
        (_files(file=("file", ("snap.png", plain_jpeg(), "image/png"))), 400, "not image/png"),
        (_files(file=("file", ("", plain_jpeg(), "image/jpeg"))), 400, "base file name"),
        (_files(file=("file", ("a/b.jpg", plain_jpeg(), "image/jpeg"))), 400, "base file name"),
    ],
    ids=["reversed", "no-req", "no-file", "extra-part", "req-filename", "req-type",
         "req-not-json", "req-missing-field", "req-with-url", "req-bad-type", "gif",
         "not-jpeg", "type-mismatch", "no-filename", "path-filename"],
)  # fmt: skip
def test_a_malformed_upload_is_refused(api, http, files, status, reason) -> None:
    response = upload(http, api, files=files)
    assert response.status_code == status, response.text
    assert response.json()["code"] == -1
    assert reason in response.json()["msg"]
    (req,) = api.requests
    assert req.status == status and reason in (req.error or "")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"no boundary at all", "multipart/form-data; boundary=XyZ"),
        (b"--XyZ\r\nContent-Disposition: form-data; name=req\r\n\r\n{}", "multipart/form-data; "
         "boundary=XyZ"),
        (b"--XyZ\r\n\r\n\r\n--XyZ--\r\n", "multipart/form-data; boundary=XyZ"),
        (b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"),
        (b"whatever", "multipart/form-data"),
        (b"whatever", "text/plain"),
        (b"", ""),
    ],
    ids=["no-delimiter", "unterminated", "no-disposition", "no-parts", "no-boundary",
         "text-plain", "no-type"],
)  # fmt: skip
def test_a_body_that_is_not_multipart_is_refused(api, http, body, content_type) -> None:
    headers = {"Authorization": KEY, "Content-Type": content_type}
    response = http.post(api.url + ENDPOINT, data=body, headers=headers, timeout=10)
    assert response.status_code in (400, 415)
    assert response.json()["code"] == -1


def test_the_url_body_is_checked_and_never_fetched(api, http) -> None:
    headers = {"Authorization": KEY}
    url = "http://127.0.0.1:9/unreachable/known.jpg"
    good = http.post(api.url + ENDPOINT, json={"url": url, **REQ}, headers=headers, timeout=10)
    assert good.status_code == 200
    assert good.json()["data"]["text"] == "A known scene."
    unknown = {"url": "https://x.example/a/other%20name.jpg", **REQ}
    other = http.post(api.url + ENDPOINT, json=unknown, headers=headers, timeout=10)
    assert other.json()["data"]["text"] == DEFAULT_CAPTION
    no_url = http.post(api.url + ENDPOINT, json=REQ, headers=headers, timeout=10)
    assert no_url.status_code == 400
    bad_url = http.post(
        api.url + ENDPOINT, json={**REQ, "url": "ftp://x/a.jpg"}, headers=headers, timeout=10
    )
    assert bad_url.status_code == 400
    first = api.requests[0]
    assert first.url == url and first.parts == [] and first.content_type == "application/json"


def test_the_newer_endpoint_is_served_and_other_paths_are_404(api, http) -> None:
    files = _files()
    ok = http.post(
        api.url + "/v1/understand/uploadImgFile", files=files, headers={"Authorization": KEY}
    )
    assert ok.status_code == 200
    missing = http.post(api.url + "/v2/nothing", files=files, headers={"Authorization": KEY})
    assert missing.status_code == 404


def test_other_methods_get_405(api, http) -> None:
    response = http.get(api.url + ENDPOINT, timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert upload(http, api).status_code == 200  # the connection is still good


def test_a_chunked_body_is_refused_and_the_connection_closed(api, http) -> None:
    body = iter([b'{"url": "http://x/a.jpg", ', b'"user_prompt": "", "system_prompt": ""}'])
    response = http.post(api.url + ENDPOINT, data=body, headers={"Authorization": KEY})
    assert response.status_code == 411
    assert response.headers.get("Connection") == "close"


def test_a_body_over_max_bytes_gets_413(http) -> None:
    with StandinCaptionAPI(api_key=KEY, max_bytes=1000) as server:
        assert upload(http, server).status_code == 413
        assert server.count == 0


# -- the caption API: what it answers ---------------------------------------------------------


def test_caption_choice_comment_then_captions_then_default(api, http) -> None:
    def caption_of(name: str, data: bytes) -> str:
        files = _files(file=("file", (name, data, "image/jpeg")))
        return str(upload(http, api, files=files).json()["data"]["text"])

    assert caption_of("known.jpg", jpeg_with_caption("From the comment.")) == "From the comment."
    assert caption_of("known.jpg", plain_jpeg()) == "A known scene."
    assert caption_of("other.jpg", plain_jpeg()) == DEFAULT_CAPTION
    assert [r.caption for r in api.requests] == [
        "From the comment.",
        "A known scene.",
        DEFAULT_CAPTION,
    ]


def test_captions_default_to_the_bundled_samples(http) -> None:
    with StandinCaptionAPI(api_key=KEY) as server:
        for name, data, caption in sample_images():
            kind = "image/png" if name.endswith(".png") else "image/jpeg"
            files = _files(file=("file", (name, data, kind)))
            assert upload(http, server, files=files).json()["data"]["text"] == caption


def test_fail_next_answers_in_order_then_recovers(api, http) -> None:
    api.fail_next(2, 503, headers={"Retry-After": "7"})
    api.fail_next(1, code=-1)
    api.fail_next(1, status=200, body=b"<html>")
    api.fail_next(1, 429, body={"code": "0429", "msg": "busy"})
    answers = [upload(http, api) for _ in range(6)]

    assert [a.status_code for a in answers] == [503, 503, 200, 200, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].json() == {"code": "0503", "msg": "service unavailable", "data": None}
    assert answers[2].json() == {"code": -1, "msg": "failure", "data": None}
    assert answers[3].content == b"<html>"
    assert answers[4].json()["code"] == "0429"
    assert answers[5].json()["code"] == 0
    assert [r.status for r in api.requests] == [503, 503, 200, 200, 429, 200]


def test_forced_answers_still_record_the_request(api, http) -> None:
    api.fail_next(1, 500)
    upload(http, api)
    (req,) = api.requests
    assert req.status == 500 and req.parts == ["req", "file"] and req.file_name == "snap.jpg"


def test_an_outage_lasts_until_cleared(api, http) -> None:
    api.set_outage(502)
    assert [upload(http, api).status_code for _ in range(3)] == [502, 502, 502]
    api.set_outage(None)
    assert upload(http, api).status_code == 200


def test_connections_are_kept_alive(api, http) -> None:
    for _ in range(4):
        assert upload(http, api).status_code == 200
    assert len({r.client_port for r in api.requests}) == 1


def test_wait_for_returns_false_at_its_deadline_and_true_when_reached(api, http) -> None:
    started = time.monotonic()
    assert api.wait_for(1, timeout=0.1) is False
    assert time.monotonic() - started < 5
    upload(http, api)
    assert api.wait_for(1, timeout=5) is True
    assert api.count == 1
    api.reset()
    assert api.count == 0


def test_latency_is_settable_at_run_time(api, http) -> None:
    api.latency = 0.3
    started = time.monotonic()
    upload(http, api)
    assert time.monotonic() - started >= 0.25
    api.latency = 0.0
    started = time.monotonic()
    upload(http, api)
    assert time.monotonic() - started < 0.25


def test_stop_wakes_a_request_held_by_latency(http) -> None:
    server = StandinCaptionAPI(api_key=KEY, latency=60).start()
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(upload(http, server).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, name="held-request")
    thread.start()
    try:
        assert server.wait_in_flight(1, timeout=5)
    finally:
        started = time.monotonic()
        server.stop()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert isinstance(outcome[0], requests.ConnectionError)


def test_the_api_can_go_down_and_come_up_on_the_same_port(api, http) -> None:
    port = api.port
    assert upload(http, api).status_code == 200
    api.go_down()
    with pytest.raises(requests.ConnectionError):
        upload(http, api)
    api.come_up()
    assert api.port == port
    assert upload(http, api).status_code == 200


# -- multipart parsing agrees with the email package ------------------------------------------


def test_parse_multipart_agrees_with_the_email_package() -> None:
    name = 'we"ird name é.jpg'
    prepared = requests.Request(
        "POST",
        "http://127.0.0.1/",
        files=[
            ("req", ("req.json", json.dumps(REQ), "application/json")),
            ("file", (name, plain_jpeg(), "image/jpeg")),
        ],
    ).prepare()
    body = prepared.body
    assert isinstance(body, bytes)
    content_type = prepared.headers["Content-Type"]
    boundary = content_type.split("boundary=", 1)[1]

    parts = parse_multipart(body, boundary)

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    theirs = list(message.iter_parts())
    assert [p.name for p in parts] == [p.get_param("name", header="content-disposition")
                                       for p in theirs]  # fmt: skip
    assert [p.content for p in parts] == [p.get_payload(decode=True) for p in theirs]
    assert [p.content_type for p in parts] == ["application/json", "image/jpeg"]
    assert parts[1].filename == name


# -- the webhook receiver ---------------------------------------------------------------------


def test_the_receiver_records_every_post(hooks, http) -> None:
    body = json.dumps({"event": "camwatch.alert", "id": "abc"}).encode()
    response = http.post(
        hooks.url + "/camwatch",
        data=body,
        headers={"Content-Type": "application/json", "X-Camwatch-Event-Id": "abc"},
        timeout=10,
    )
    assert response.status_code == 200
    assert hooks.wait_for(1, timeout=5)
    (hook,) = hooks.received
    assert hook.body == body
    assert hook.json == {"event": "camwatch.alert", "id": "abc"}
    assert hook.path == "/camwatch"
    assert hook.headers["x-camwatch-event-id"] == "abc"  # case-insensitive
    assert hook.headers.get("X-Camwatch-Event-Id") == "abc" == hook.event_id
    assert hook.status == 200


def test_the_receiver_fails_on_request(hooks, http) -> None:
    hooks.fail_next(2)
    hooks.fail_next(1, 503)
    statuses = [http.post(hooks.url, data=b"{}", timeout=10).status_code for _ in range(4)]
    assert statuses == [500, 500, 503, 200]
    assert [r.status for r in hooks.received] == statuses
    assert len(hooks.delivered) == 1
    assert hooks.wait_for_delivered(1, timeout=5)


def test_the_receiver_goes_down_and_comes_up_on_the_same_port(hooks, http) -> None:
    port = hooks.port
    assert http.post(hooks.url, data=b"{}", timeout=10).status_code == 200  # pooled connection
    hooks.go_down()
    with pytest.raises(requests.ConnectionError):
        http.post(hooks.url, data=b"{}", timeout=10)
    with pytest.raises(requests.ConnectionError):  # a fresh connection is refused too
        requests.post(hooks.url, data=b"{}", timeout=10)
    hooks.come_up()
    assert hooks.port == port
    assert http.post(hooks.url, data=b"{}", timeout=10).status_code == 200
    assert hooks.count == 2


def test_verify_signature() -> None:
    body = b'{"id": "x"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert WebhookReceiver.verify_signature(body, good, "s3cret")
    assert not WebhookReceiver.verify_signature(body + b" ", good, "s3cret")
    assert not WebhookReceiver.verify_signature(body, good, "other")
    assert not WebhookReceiver.verify_signature(body, good.removeprefix("sha256="), "s3cret")
    assert not WebhookReceiver.verify_signature(body, None, "s3cret")
    assert not WebhookReceiver.verify_signature(body, "sha256=é", "s3cret")


# -- JPEG comments and samples ----------------------------------------------------------------


def test_jpeg_with_caption_is_a_real_jpeg_that_carries_its_caption() -> None:
    data = jpeg_with_caption("Un chat « noir » dort.")
    assert data[:4] == b"\xff\xd8\xff\xfe"
    assert jpeg_caption(data) == "Un chat « noir » dort."
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (320, 240)
        img.load()


def test_jpeg_with_caption_replaces_an_earlier_caption() -> None:
    twice = jpeg_with_caption("second", jpeg_with_caption("first"))
    assert jpeg_caption(twice) == "second"
    assert twice.count(b"caption:") == 1
    assert len(twice) == len(jpeg_with_caption("second"))


def test_jpeg_with_caption_on_a_given_base() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="JPEG")
    data = jpeg_with_caption("tiny", buf.getvalue())
    assert jpeg_caption(data) == "tiny"
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (8, 8)


def test_jpeg_with_caption_refuses_what_it_cannot_do() -> None:
    png = next(data for name, data, _ in sample_images() if name.endswith(".png"))
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_with_caption("x", png)
    with pytest.raises(ValueError, match="too long"):
        jpeg_with_caption("x" * 70_000)


def test_jpeg_caption_ignores_other_comments_and_non_jpegs() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", comment=b"made by a camera")
    assert jpeg_caption(buf.getvalue()) is None
    assert jpeg_caption(b"\x89PNG\r\n\x1a\n") is None
    assert jpeg_caption(b"\xff\xd8\xff\xfe\x00") is None  # cut short


def test_the_bundled_samples_are_small_real_images_with_captions() -> None:
    samples = sample_images()
    folder = resources.files("camwatch") / "samples"
    on_disk = {p.name for p in folder.iterdir() if p.name.endswith((".jpg", ".png"))}
    assert {name for name, _, _ in samples} == on_disk
    assert 4 <= len(samples) <= 6
    formats = set()
    for name, data, caption in samples:
        assert len(data) < 20_000, name
        assert caption.startswith("It shows"), name
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (320, 240)
            img.load()
            formats.add(img.format)
    assert formats == {"JPEG", "PNG"}
    captions = " ".join(c for _, _, c in samples)
    for phrase in ("person lying on the ground", "No one is lying on the ground", "package"):
        assert phrase in captions
    assert samples[0][0].endswith(".jpg")  # the demo truncates the first one


# -- the command line -------------------------------------------------------------------------


@contextlib.contextmanager
def _run_foreground(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "camwatch.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_api_runs_in_the_foreground(http, sig) -> None:
    with _run_foreground(["api", "--port", "0", "--latency", "0", "--api-key", "K"]) as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        files = _files(file=("file", ("frontdoor-package.jpg", plain_jpeg(), "image/jpeg")))
        response = http.post(url + ENDPOINT, files=files, headers={"Authorization": "K"})
        assert "package" in response.json()["data"]["text"]  # the samples' captions
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "1 requests" in err


def test_the_webhook_receiver_runs_in_the_foreground(http) -> None:
    with _run_foreground(["webhook", "--port", "0"]) as (proc, url):
        assert http.post(url + "/hook", json={"a": 1}, timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        assert proc.returncode == 0
