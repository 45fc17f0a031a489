"""The OpenAI-compatible provider against the chat completions stand-in on 127.0.0.1: the request
body validated against the schema of OpenAI's published OpenAPI document (tests/data/openai),
the data URL, the key (Bearer, or none), usage read into tokens, and every error class."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from structlog.testing import capture_logs

from camwatch.config import parse_config
from camwatch.errors import (
    AuthError,
    CaptionAborted,
    ConfigError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.prompts import Prompts
from camwatch.providers.openai import OpenAIProvider, request_body
from camwatch.testing import StandinChatAPI, jpeg_with_caption, sample_images

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

KEY = "sk-openai-test-5e1d7c9a3b"  # distinctive, so a leak anywhere is easy to spot
MODEL = "llava:7b"
PROMPTS = Prompts("What is happening here?", "You watch a house.", False)
SCHEMA_FILE = Path(__file__).parent.parent / "data" / "openai" / "chat_completions.schema.json"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02}


# -- the published schema --------------------------------------------------------------------


def _document() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _validator(root: str) -> jsonschema.protocols.Validator:
    """Return a validator of `root` (a schema of the document), its refs resolved in it."""
    document = _document()
    schema = {"$ref": f"#/components/schemas/{root}", "components": document["components"]}
    # OpenAPI 3.1 schemas are JSON Schema 2020-12.
    return jsonschema.Draft202012Validator(schema)


def _properties(name: str) -> set[str]:
    """Return every property name the document defines for a schema (allOf members merged)."""
    schemas = _document()["components"]["schemas"]
    found: set[str] = set()
    stack = [schemas[name]]
    while stack:
        schema = stack.pop()
        found |= set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            stack.append(schemas[part["$ref"].rsplit("/", 1)[-1]] if "$ref" in part else part)
    return found


def check_request(body: dict[str, Any]) -> None:
    """Fail unless `body` is a valid CreateChatCompletionRequest whose every field (top level,
    messages, content parts) is one the document defines."""
    errors = sorted(_validator("CreateChatCompletionRequest").iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    schemas = _document()["components"]["schemas"]
    assert set(body) <= _properties("CreateChatCompletionRequest"), set(body)
    for message in body["messages"]:
        kind = {"system": "ChatCompletionRequestSystemMessage"}.get(
            message["role"], "ChatCompletionRequestUserMessage"
        )
        assert set(message) <= set(schemas[kind]["properties"]), message.keys()
        if isinstance(message["content"], list):
            for part in message["content"]:
                part_schema = {
                    "text": "ChatCompletionRequestMessageContentPartText",
                    "image_url": "ChatCompletionRequestMessageContentPartImage",
                }[part["type"]]
                assert set(part) <= set(schemas[part_schema]["properties"]), part.keys()
                if part["type"] == "image_url":
                    allowed = schemas[part_schema]["properties"]["image_url"]["properties"]
                    assert set(part["image_url"]) <= set(allowed)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def chat() -> Iterator[StandinChatAPI]:
    """Yield a running chat completions stand-in that wants KEY and serves MODEL."""
    with StandinChatAPI(captions={}, api_key=KEY, model=MODEL) as server:
        yield server


@pytest.fixture
def make_provider(chat: StandinChatAPI) -> Iterator[Callable[..., OpenAIProvider]]:
    """Return `make(key=KEY, stop=None, retry={...}, **block settings)`: an OpenAIProvider on
    the stand-in (closed at the end of the test)."""
    made: list[OpenAIProvider] = []

    def make(
        key: str | None = KEY,
        stop: threading.Event | None = None,
        retry: dict[str, Any] | None = None,
        **settings: Any,
    ) -> OpenAIProvider:
        caption = {
            "provider": "openai",
            "base_url": settings.pop("base_url", chat.base_url),
            "model": settings.pop("model", MODEL),
            "retry": {"attempts": 3, **FAST, **(retry or {})},
            **settings,
        }
        config = parse_config({"caption": caption, "cameras": [{"name": "c", "path": "/tmp"}]})
        provider = OpenAIProvider(config.caption, key, stop=stop)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the wire format -------------------------------------------------------------------------


def test_the_request_body_is_a_valid_chat_completions_request(chat, make_provider) -> None:
    data = jpeg_with_caption("A cat sits on the mat.")
    result = make_provider().caption_file(data, "12-00-01.jpg", PROMPTS)

    assert result.text == "A cat sits on the mat."
    assert result.provider == "openai" and not result.fallback
    (req,) = chat.requests
    assert req.status == 200
    assert req.path == "/v1/chat/completions"
    assert req.headers["Content-Type"] == "application/json"
    assert req.authorization == f"Bearer {KEY}"
    body = req.json
    assert body is not None
    check_request(body)
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": PROMPTS.system_prompt},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": PROMPTS.user_prompt},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/jpeg;base64," + base64.b64encode(data).decode()
                        },
                    },
                ],
            },
        ],
        "max_tokens": 300,
        "temperature": 0.0,
    }
    assert req.image == data  # the data URL carries the bytes, unchanged


def test_a_png_is_sent_as_its_bytes_say_whatever_its_name(chat, make_provider) -> None:
    _, png, _ = next(s for s in sample_images() if s[0].endswith(".png"))
    make_provider(max_tokens=120, temperature=0.4).caption_file(png, "mislabelled.jpg", PROMPTS)

    (req,) = chat.requests
    assert req.status == 200
    assert req.image_type == "image/png" and req.image == png
    assert req.json is not None
    check_request(req.json)
    assert req.json["max_tokens"] == 120 and req.json["temperature"] == 0.4


def test_url_mode_sends_the_public_url_as_image_url(chat, make_provider) -> None:
    chat.captions["known.jpg"] = "A known scene."
    url = "https://cams.example.com/frontdoor/known.jpg"
    result = make_provider().caption_url(url, PROMPTS)

    assert result.text == "A known scene."
    (req,) = chat.requests
    assert req.json is not None
    check_request(req.json)
    assert req.json["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": url}}


def test_no_key_sends_no_authorization_and_no_system_prompt_no_system_message(
    make_provider,
) -> None:
    with StandinChatAPI(captions={}, api_key=None) as local:
        provider = make_provider(key=None, base_url=local.base_url)
        provider.caption_file(jpeg_with_caption("x"), "a.jpg", Prompts("Describe.", " ", False))
        (req,) = local.requests
    assert req.authorization is None
    assert req.json is not None
    check_request(req.json)
    assert [m["role"] for m in req.json["messages"]] == ["user"]


def test_the_schema_check_catches_what_a_guess_would_get_wrong() -> None:
    good = request_body(MODEL, PROMPTS, "data:image/jpeg;base64,/9j/")
    check_request(good)
    image_as_string = json.loads(json.dumps(good))
    image_as_string["messages"][1]["content"][1]["image_url"] = "data:image/jpeg;base64,/9j/"
    misspelt = {**good, "max_token": 300}
    no_model = {k: v for k, v in good.items() if k != "model"}
    for bad in (image_as_string, misspelt, no_model):
        with pytest.raises(AssertionError):
            check_request(bad)


def test_request_body_of_every_shape_validates() -> None:
    # The function the provider uses, over prompts with every kind of text in them.
    for prompts in (PROMPTS, Prompts('Qu\'y a-t-il ? « été » \n\n{"x": 1}', "", True)):
        for url in ("data:image/png;base64,iVBORw0KGgo=", "https://h.example/a b.jpg"):
            check_request(request_body("gpt-4o-mini", prompts, url, 1, 2.0))


# -- answers -----------------------------------------------------------------------------------


def test_usage_is_read_into_tokens(chat, make_provider) -> None:
    result = make_provider().caption_file(jpeg_with_caption("A fox."), "a.jpg", PROMPTS)
    answer_usage = (result.tokens_input, result.tokens_output)
    assert result.tokens_input > 0 and result.tokens_output > 0
    assert result.tokens_total == sum(answer_usage)
    # Exactly the answer's numbers: the stand-in's formula, recomputed.
    prompt = f"{PROMPTS.system_prompt} {PROMPTS.user_prompt}"
    assert answer_usage == (85 + len(prompt) // 4, 1 + len("A fox.") // 4)


def test_usage_missing_or_odd_counts_zero(chat, make_provider) -> None:
    answer = {"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "x"}}
    chat.fail_next(1, 200, body=answer)
    result = make_provider().caption_file(jpeg_with_caption("y"), "a.jpg", PROMPTS)
    assert (result.text, result.tokens_input, result.tokens_output, result.tokens_total) == (
        "ok",
        0,
        0,
        0,
    )


def test_content_as_a_list_of_text_parts_is_joined(make_provider) -> None:
    with StandinChatAPI(captions={}, api_key=KEY, content_as_parts=True) as parts:
        provider = make_provider(base_url=parts.base_url)
        result = provider.caption_file(jpeg_with_caption("Two halves joined."), "a.jpg", PROMPTS)
    assert result.text == "Two halves joined."


def test_the_stand_ins_answers_are_valid_chat_completions() -> None:
    validator = _validator("CreateChatCompletionResponse")
    with StandinChatAPI(captions={}) as server:
        raw = requests.post(
            server.base_url + "/chat/completions",
            json=request_body(MODEL, PROMPTS, "https://h.example/a.jpg"),
            timeout=10,
        )
    assert raw.status_code == 200
    errors = [e.message for e in validator.iter_errors(raw.json())]
    assert not errors


# -- error classes -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_auth_errors_at_once(chat, make_provider, status) -> None:
    chat.fail_next(1, status, message="Incorrect API key provided")
    with pytest.raises(AuthError, match=f"HTTP {status}.*caption.api_key"):
        make_provider().caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert chat.count == 1


def test_a_wrong_key_is_an_auth_error(chat, make_provider) -> None:
    with pytest.raises(AuthError):
        make_provider(key="sk-wrong").caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert [r.status for r in chat.requests] == [401]


def test_402_and_429_insufficient_quota_are_credits_errors(chat, make_provider) -> None:
    provider = make_provider()
    chat.fail_next(1, 402)
    with pytest.raises(CreditsError):
        provider.caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    chat.fail_next(1, 429, message="You exceeded your current quota", code="insufficient_quota")
    with pytest.raises(CreditsError, match="exceeded your current quota"):
        provider.caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert chat.count == 2  # neither retried


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_succeed(chat, make_provider, status) -> None:
    chat.fail_next(2, status)
    result = make_provider().caption_file(jpeg_with_caption("Back."), "a.jpg", PROMPTS)
    assert result.text == "Back."
    assert [r.status for r in chat.requests] == [status, status, 200]


def test_transient_errors_used_up_raise_transient(chat, make_provider) -> None:
    chat.set_outage(503)
    with pytest.raises(TransientCaptionError, match="HTTP 503"):
        make_provider(retry={"attempts": 2}).caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert chat.count == 2


def test_retry_after_is_honoured_on_429(chat, make_provider) -> None:
    chat.fail_next(1, 429, headers={"Retry-After": "0.4"})
    make_provider().caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    first, second = chat.requests
    assert second.time - first.time >= 0.4


@pytest.mark.parametrize("status", [400, 404, 413, 415, 422])
def test_permanent_statuses_fail_the_image_at_once(chat, make_provider, status) -> None:
    chat.fail_next(1, status, message="bad image")
    with pytest.raises(PermanentCaptionError, match=f"HTTP {status}.*bad image"):
        make_provider().caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert chat.count == 1


def test_an_unknown_model_says_which_url_and_model(chat, make_provider) -> None:
    with pytest.raises(PermanentCaptionError) as caught:
        make_provider(model="llava:70b").caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    message = str(caught.value)
    assert "HTTP 404" in message and "not found" in message
    assert f"{chat.base_url}/chat/completions" in message
    assert "caption.model ('llava:70b'" in message


def test_a_refusal_fails_the_image(chat, make_provider) -> None:
    refusal = {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]}
    chat.fail_next(1, 200, body=refusal)
    with pytest.raises(PermanentCaptionError, match=r"refused.*can't help"):
        make_provider().caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)


@pytest.mark.parametrize(
    "body", [b"<html>busy</html>", {"choices": []}, {"choices": [{"message": {}}]}, [1, 2]]
)
def test_an_answer_that_is_not_a_chat_completion_is_retried(chat, make_provider, body) -> None:
    chat.fail_next(1, 200, body=body)
    result = make_provider().caption_file(jpeg_with_caption("Fine."), "a.jpg", PROMPTS)
    assert result.text == "Fine." and chat.count == 2


def test_connection_refused_is_transient(make_provider) -> None:
    provider = make_provider(base_url=f"http://127.0.0.1:{free_port()}/v1", retry={"attempts": 2})
    with pytest.raises(TransientCaptionError, match="cannot reach OpenAI-compatible API"):
        provider.caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)


def test_a_stop_during_the_wait_aborts(chat, make_provider) -> None:
    stop = threading.Event()
    chat.set_outage(503)
    provider = make_provider(
        stop=stop, retry={"attempts": 5, "backoff_initial": 5, "backoff_max": 5}
    )
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(CaptionAborted):
        provider.caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
    assert time.monotonic() - started < 3


def test_the_key_never_appears_in_logs_errors_or_repr(chat, make_provider) -> None:
    echo = {"error": {"message": f"bad key {KEY} given", "type": "x"}}
    provider = make_provider(retry={"attempts": 2})
    texts: list[str] = [repr(provider)]
    with capture_logs() as logs:
        for status in (503, 401):
            chat.fail_next(2, status, body=echo)
            with pytest.raises((TransientCaptionError, AuthError)) as caught:
                provider.caption_file(jpeg_with_caption("x"), "a.jpg", PROMPTS)
            texts.append("".join(traceback.format_exception(caught.value)))
    assert "***" in "".join(texts)
    assert KEY not in "".join(texts) + repr(logs)


def test_a_key_a_header_cannot_carry_is_a_config_error(chat) -> None:
    config = parse_config(
        {
            "caption": {"provider": "openai", "base_url": chat.base_url, "model": MODEL},
            "cameras": [{"name": "c", "path": "/tmp"}],
        }
    )
    with pytest.raises(ConfigError, match=r"caption\.fallback\.api_key: empty") as caught:
        OpenAIProvider(config.caption, "sk-\nbad", field="caption.fallback")
    assert "sk-" not in str(caught.value)
