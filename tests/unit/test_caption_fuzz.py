"""Fuzzing how the caption client reads an answer: whatever status, headers and body the API (or
anything in between) sends, `CaptionClient` returns a `CaptionResult` (a str caption, token counts
that are non-negative ints) or raises a `CaptionError` subclass; nothing else may escape, since the
pipeline only catches those. And the class is the one the contract gives (docs/interface: "The
caption API"): a good caption stays a caption whatever else the answer holds, and a non-2xx status
means what the status says whatever the body. Answers come through an injected transport
(http_fakes) as real urllib3 responses, read by a real client (one attempt, tiny backoff).

What the fuzzer found is kept as explicit cases (`FOUND`, and the `@example`s).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
from http_fakes import ScriptedAdapter, session_with
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from camwatch.caption import CaptionClient, CaptionResult, parse_retry_after
from camwatch.config import CaptionConfig
from camwatch.errors import (
    AuthError,
    CaptionError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.prompts import Prompts
from camwatch.testing import jpeg_with_caption

KEY = "sk-fuzz-51d0c7e2a9b84f36"
PROMPTS = Prompts("What is happening here?", "You watch a house.", False)
IMAGE = jpeg_with_caption("A fuzzed scene.")
CONFIG = CaptionConfig(
    base_url="http://127.0.0.1:9",  # never dialled: the adapter answers
    timeout=5.0,
    retry={
        "attempts": 1,
        "backoff_initial": 0.001,
        "backoff_max": 0.001,
        "retry_after_max": 0.001,
    },
)

# No example database: it would be written into the source tree, and a failure prints its
# example anyway.
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Headers = dict[str, str]


def ask(status: int, body: bytes, headers: Mapping[str, str]) -> CaptionResult | CaptionError:
    """Serve one answer to a real client; return its result or the CaptionError it raised.
    Anything else it raises propagates: that is the bug this file looks for."""
    adapter = ScriptedAdapter((status, body, dict(headers)))
    with session_with(adapter) as session, CaptionClient(CONFIG, KEY, session=session) as client:
        try:
            result = client.caption_file(IMAGE, "fuzz.jpg", PROMPTS)
        except CaptionError as error:
            return error
    assert len(adapter.requests) == 1
    return result


def check(status: int, body: bytes, headers: Mapping[str, str]) -> None:
    """The contract: a well-typed CaptionResult, or a CaptionError; never anything else."""
    outcome = ask(status, body, headers)
    if isinstance(outcome, CaptionError):
        return
    assert isinstance(outcome, CaptionResult), type(outcome)
    assert type(outcome.text) is str
    for count in (outcome.tokens_input, outcome.tokens_output, outcome.tokens_total):
        assert type(count) is int and count >= 0, outcome


# -- what an answer may hold -----------------------------------------------------------------------

DIGITS = st.integers(1, 6000).map(lambda n: "9" * n)  # past 4300 digits int() refuses them

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    DIGITS,
    st.sampled_from(["0", "0000", "200", "0429", "0401", "0402", "²", "١٢", "①", " 7 ", "-1"]),
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
codes = st.one_of(
    st.sampled_from([0, "0", "0000", 200, "200", 0.0, 200.0, "429", "0429", 401, "0403", "0402"]),
    st.sampled_from([-1, "-1", True, False, None, [], {}, "", " 0 ", 1e309, -0.0]),
    trees,
)
counts = st.one_of(
    st.integers(-5, 10**6),
    st.integers(-(10**300), 10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["12", " 12 ", "-3", "1.5", "²", "³", "①", "١٢", "\U0001d7d7", "", "0x10"]),
    DIGITS,
    trees,
)
tokens = st.one_of(
    st.fixed_dictionaries({}, optional={"input": counts, "output": counts, "total": counts}),
    trees,
)
datas = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"text": st.one_of(st.text(), trees), "token": tokens, "extra": trees}
    ),
    st.fixed_dictionaries({"text": st.text(), "token": tokens}),
    trees,
)
envelopes = st.fixed_dictionaries(
    {"code": codes},
    optional={
        "msg": st.one_of(st.text(), trees, st.sampled_from([KEY, f"bad key {KEY}"])),
        "data": datas,
    },
)


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8")


def nested(depth: int, where: str) -> bytes:
    """An envelope with `depth` nested arrays at `where` (`body`, `code`, `msg`, `text`,
    `token`, `input`)."""
    deep = "[" * depth + "]" * depth
    if where == "body":
        return deep.encode()
    token = deep if where == "token" else '{"input": %s}' % (deep if where == "input" else 1)
    code = deep if where == "code" else "0"
    msg = deep if where == "msg" else '"ok"'
    text = deep if where == "text" else '"a caption"'
    envelope = f'{{"code": {code}, "msg": {msg}, "data": {{"text": {text}, "token": {token}}}}}'
    return envelope.encode()


deep_bodies = st.builds(
    nested,
    st.one_of(st.integers(1, 1100), st.sampled_from([5000, 10_000, 50_000])),
    st.sampled_from(["body", "code", "msg", "text", "token", "input"]),
)
raw_bodies = st.one_of(
    st.binary(max_size=600),
    st.sampled_from(
        [b"", b"null", b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[]", b"{}", b'"x"']
    ),
    DIGITS.map(str.encode),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
)
bodies = st.one_of(
    envelopes.map(_json),
    trees.map(_json),
    deep_bodies,
    raw_bodies,
    envelopes.map(lambda e: gzip.compress(_json(e))),
)

http_dates = st.datetimes().map(
    lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT") if d.year >= 1000 else "x"
)
retry_afters = st.one_of(
    st.integers(-5, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    DIGITS,
    http_dates,
    st.builds(
        "{} {} {} {}:{}:{} {}".format,
        st.integers(0, 10**25),
        st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
        st.integers(0, 10**25),
        st.integers(0, 10**25),
        st.integers(0, 10**25),
        st.integers(0, 10**25),
        st.sampled_from(["GMT", "+0000", "-2359", "+9999", "+99999999999999999999", "EST", ""]),
    ),
    st.text(max_size=40),
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": retry_afters,
        "Content-Type": st.one_of(
            st.sampled_from(["application/json", "text/html", "application/octet-stream"]),
            st.sampled_from(["utf-8", "utf-16", "latin-1", "idna", "rot13", "base64", "nope"]).map(
                "application/json; charset={}".format
            ),
            header_values,
        ),
        "Location": header_values,
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "identity", "gzip, deflate", "x"]),
        "X-Noise": header_values,
    },
)
statuses = st.one_of(
    st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 402, 403, 404, 408, 429, 500, 503]),
    st.integers(100, 999),
)


# -- what the contract says an answer means ------------------------------------------------------

SUCCESS_CODES = [0, "0", "0000", 200, "200", 0.0, 200.0, " 0 ", -0.0]


def by_status(status: int) -> type[CaptionError] | None:
    """Return the error a non-2xx status means whatever the body says (None for 2xx)."""
    if status in (401, 403):
        return AuthError
    if status == 402:
        return CreditsError
    if status in (408, 425, 429) or status >= 500:
        return TransientCaptionError
    if not 200 <= status < 300:
        return PermanentCaptionError  # other 4xx, 3xx (a redirect is not followed), 1xx
    return None


good_captions = st.builds(
    lambda code, msg, text, token, extra: _json(
        {"code": code, "msg": msg, "data": {"text": text, "token": token, **extra}}
    ),
    st.sampled_from(SUCCESS_CODES),
    st.one_of(st.just("success"), trees),
    st.text(max_size=80),
    tokens,
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("text", "token")), trees),
)
plain_headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": retry_afters,
        "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8"]),
        "Location": header_values,
        "X-Noise": header_values,
    },
)


def _tokens(value: Any) -> bytes:
    return _json({"code": 0, "msg": "success", "data": {"text": "A caption.", "token": value}})


OK_TEXT = {"code": 0, "msg": "success", "data": {"text": "A caption."}}
HUGE_YEAR = "1 Jan 9999999999 0:0 GMT"  # parsedate_to_datetime: OverflowError

# -- what the fuzzer found ---------------------------------------------------------------------
#
# (id, status, body, headers, what the contract says it means). Before 3bb74db each of these
# raised something that is not a CaptionError out of the client; since then the client turns any
# such exception into TransientCaptionError("unexpected failure (...)"), which keeps the type
# contract but gives the wrong answer wherever the contract says something else.
FOUND: list[tuple[str, int, bytes, Headers, type[CaptionResult] | type[CaptionError]]] = [
    # caption._count: "²".isdigit() is True and int("²") raises ValueError: a good caption lost.
    ("token-superscript-digit", 200, _tokens({"input": "²"}), {}, CaptionResult),
    # caption._count: digits past sys.get_int_max_str_digits() (4300): ValueError, caption lost.
    ("token-4301-digits", 200, _tokens({"output": "9" * 4301}), {}, CaptionResult),
    # caption.parse_retry_after: parsedate_to_datetime raises OverflowError for a huge year (or
    # day, hour, minute, offset); only TypeError/ValueError/IndexError are caught. It is read on
    # every 2xx too, so a good caption with this header is lost.
    ("retry-after-huge-year-200", 200, _json(OK_TEXT), {"Retry-After": HUGE_YEAR}, CaptionResult),
    ("retry-after-huge-year-503", 503, b"{}", {"Retry-After": HUGE_YEAR}, TransientCaptionError),
    # caption._read: response.json() raises RecursionError past ~990 levels of nesting and only
    # ValueError is caught, before the status is looked at: a 401 becomes transient (retried,
    # no pause), a 400 or 402 too.
    ("401-body-nested-10000", 401, nested(10_000, "body"), {}, AuthError),
    ("402-body-nested-1000", 402, nested(1000, "body"), {}, CreditsError),
    ("400-body-nested-1000", 400, nested(1000, "code"), {}, PermanentCaptionError),
    # requests.Session.send (allow_redirects=False still runs resolve_redirects once) decodes a
    # 3xx Location header as UTF-8: UnicodeDecodeError for a Latin-1 byte, raised from
    # session.post, outside the `except requests.RequestException`.
    (
        "301-location-not-utf8",
        301,
        b"{}",
        {"Location": "http://127.0.0.1/\xff"},
        PermanentCaptionError,
    ),
    # Deep nesting in a 200 answer: transient, as an answer that is not the API's JSON should be.
    ("200-body-nested-10000", 200, nested(10_000, "body"), {}, TransientCaptionError),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [pytest.param(s, b, h, e, id=i) for i, s, b, h, e in FOUND],
)
def test_found_by_the_fuzzer(
    status: int,
    body: bytes,
    headers: Headers,
    expected: type[CaptionResult] | type[CaptionError],
) -> None:
    check(status, body, headers)
    outcome = ask(status, body, headers)
    assert isinstance(outcome, expected), f"{type(outcome).__name__}: {outcome}"


# -- the fuzz ---------------------------------------------------------------------------------


@FUZZ
@given(status=statuses, body=bodies, headers=headers)
@example(200, _json(OK_TEXT), {})
@example(200, _tokens({"input": 1e308, "output": -2, "total": math.inf}), {})
@example(200, _json({"code": "0", "data": {"text": "", "token": "x"}}), {"Retry-After": "nan"})
@example(503, b"{}", {"Retry-After": "Mon, 01 Jan 9999 00:00:00 GMT"})
@example(200, _tokens({"input": "²"}), {})
@example(200, _tokens({"output": "9" * 4301}), {})
@example(200, nested(10_000, "body"), {})
@example(401, nested(10_000, "body"), {})
@example(503, b"{}", {"Retry-After": HUGE_YEAR})
@example(200, _json(OK_TEXT), {"Retry-After": HUGE_YEAR})
@example(301, b"{}", {"Location": "http://127.0.0.1/\xff"})
def test_any_answer_gives_a_caption_or_a_caption_error(
    status: int, body: bytes, headers: Headers
) -> None:
    check(status, body, headers)


@FUZZ
@given(status=st.sampled_from([200, 201, 202, 203, 206]), body=good_captions, headers=plain_headers)
@example(200, _tokens({"input": "²"}), {})
@example(200, _tokens({"output": "9" * 4301}), {})
@example(200, _json(OK_TEXT), {"Retry-After": HUGE_YEAR})
def test_a_good_caption_is_a_caption_whatever_else_the_answer_holds(
    status: int, body: bytes, headers: Headers
) -> None:
    """A 2xx with a success code and a string `data.text` is a caption: odd token counts are
    0, and nothing else in the answer (Retry-After, msg, extra keys) may lose it."""
    outcome = ask(status, body, headers)
    assert isinstance(outcome, CaptionResult), f"{type(outcome).__name__}: {outcome}"
    assert outcome.text == json.loads(body)["data"]["text"]
    check(status, body, headers)


@FUZZ
@given(
    # Not 1xx, 204 or 304: an answer that may not have a body would get one from the fake.
    status=st.integers(300, 999).filter(lambda s: s != 304),
    body=bodies.filter(lambda b: not b.startswith(b"\x1f\x8b")),  # no gzip: no Content-Encoding
    headers=plain_headers,
)
@example(401, nested(10_000, "body"), {})
@example(402, nested(1000, "body"), {})
@example(301, b"{}", {"Location": "http://127.0.0.1/\xff"})
def test_an_error_status_means_what_the_status_says_whatever_the_body(
    status: int, body: bytes, headers: Headers
) -> None:
    """401/403 pause (AuthError), 402 pauses (CreditsError), 408/425/429/5xx are retried, any
    other non-2xx is permanent: whatever body or headers come with it."""
    expected = by_status(status)
    assert expected is not None
    outcome = ask(status, body, headers)
    assert isinstance(outcome, expected), f"{type(outcome).__name__}: {outcome}"


@FUZZ
@given(value=retry_afters)
@example(HUGE_YEAR)
@example("1 Jan 2000 0:0 +99999999999999999999")
def test_parse_retry_after_never_raises(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0), seconds


@FUZZ
@given(code=codes, msg=st.one_of(st.none(), st.text(max_size=20), trees))
@example(code=KEY, msg=None)
@example(code=f"-1 {KEY}", msg=None)
def test_the_api_key_never_reaches_an_error_message(code: Any, msg: Any) -> None:
    """A server (or a proxy) that echoes the request, key included, must not get the key into
    an error message: it ends up in the log and in the database (`images.last_error`)."""
    outcome = ask(200, _json({"code": code, "msg": msg, "data": None}), {})
    if isinstance(outcome, CaptionError):
        assert KEY not in str(outcome), str(outcome)[:300]
