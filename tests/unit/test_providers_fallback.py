"""`caption.fallback` (providers/fallback.py) with real providers on real stand-ins on 127.0.0.1:
the memories.ai API as the primary, an OpenAI-compatible server as the fallback. The circuits'
clock is stepped by the test, so "later" needs no sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from camwatch.config import CaptionConfig, parse_config
from camwatch.errors import (
    AuthError,
    CreditsError,
    PausingCaptionError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.prompts import Prompts
from camwatch.providers import provider_for
from camwatch.providers.fallback import FallbackProvider
from camwatch.providers.memories import MemoriesProvider
from camwatch.providers.openai import OpenAIProvider
from camwatch.testing import StandinCaptionAPI, StandinChatAPI, jpeg_with_caption

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

KEY = "sk-memories-primary-81c4d2e6"
PROMPTS = Prompts("What is happening here?", "You watch a house.", False)
FAST = {"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02}
PAUSE_PROBE = 60.0


@pytest.fixture
def mem() -> Iterator[StandinCaptionAPI]:
    with StandinCaptionAPI(captions={}, api_key=KEY) as server:
        yield server


@pytest.fixture
def chat() -> Iterator[StandinChatAPI]:
    with StandinChatAPI(captions={}, api_key=None) as server:
        yield server


def caption_config(mem: StandinCaptionAPI, chat: StandinChatAPI, **changes: Any) -> CaptionConfig:
    caption = {
        "base_url": mem.url,
        "api_key": KEY,
        "retry": FAST,
        "pause_probe": PAUSE_PROBE,
        "fallback": {
            "provider": "openai",
            "base_url": chat.base_url,
            "model": "llava:7b",
            "retry": FAST,
            "pause_probe": PAUSE_PROBE,
        },
        **changes,
    }
    return parse_config({"caption": caption, "cameras": [{"name": "c", "path": "/tmp"}]}).caption


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pair(mem, chat, clock) -> Iterator[Callable[..., FallbackProvider]]:
    made: list[FallbackProvider] = []

    def make(key: str = KEY) -> FallbackProvider:
        caption = caption_config(mem, chat)
        assert caption.fallback is not None
        primary = MemoriesProvider(caption, key)
        fallback = OpenAIProvider(caption.fallback, None)
        provider = FallbackProvider(primary, fallback, caption, caption.fallback, clock=clock)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def ask(provider: FallbackProvider, text: str = "A quiet porch.") -> Any:
    return provider.caption_file(jpeg_with_caption(text), "a.jpg", PROMPTS)


def test_primary_down_fallback_captions_then_primary_again(pair, mem, chat, clock) -> None:
    provider = pair()
    mem.set_outage(503)
    with capture_logs() as logs:
        first = ask(provider, "A man at the door.")
        assert (first.text, first.provider, first.fallback) == (
            "A man at the door.",
            "openai",
            True,
        )
        assert isinstance(first.primary_error, TransientCaptionError)
        assert mem.count == 2  # the primary's two tries, then the fallback
        second = ask(provider, "Still there.")
        assert second.fallback and mem.count == 2  # its circuit is open: not asked at all
        assert chat.count == 2

        mem.set_outage(None)  # the primary is back; its probe is due once the period ends
        clock.now += 31
        third = ask(provider, "Gone.")
    assert (third.text, third.provider, third.fallback) == ("Gone.", "memories", False)
    assert third.primary_resumed
    assert chat.count == 2 and mem.count == 3
    assert ask(provider).provider == "memories"
    events = [e["event"] for e in logs]
    assert events.count("caption_api_unavailable") == 1
    assert events.count("caption_fallback_in_use") == 1
    assert events.count("caption_fallback_ended") == 1
    unavailable = next(e for e in logs if e["event"] == "caption_api_unavailable")
    assert unavailable["provider"] == "memories"


def test_paused_primary_401_goes_to_the_fallback_and_is_probed_every_pause_probe(
    pair, mem, chat, clock
) -> None:
    provider = pair(key="sk-wrong-key")
    result = ask(provider, "A parcel.")
    assert result.fallback and result.text == "A parcel."
    assert isinstance(result.primary_error, AuthError)
    assert [r.status for r in mem.requests] == [401]  # one request: a bad key is not retried

    clock.now += PAUSE_PROBE - 1
    assert ask(provider).fallback
    assert mem.count == 1  # paused: no probe before pause_probe

    clock.now += 2
    assert ask(provider).fallback  # the probe meets 401 again
    assert mem.count == 2
    assert all(r.authorization is None for r in chat.requests)  # never the primary's key


def test_primary_out_of_credits_is_reported_with_the_fallbacks_caption(pair, mem) -> None:
    mem.fail_next(1, 402)
    result = ask(pair())
    assert result.fallback
    assert isinstance(result.primary_error, CreditsError)


def test_a_permanent_refusal_by_the_primary_fails_the_image(pair, mem, chat) -> None:
    mem.fail_next(1, 400)
    with pytest.raises(PermanentCaptionError):
        ask(pair())
    assert chat.count == 0


def test_both_down_is_transient_with_a_wait_and_asks_nobody_meanwhile(
    pair, mem, chat, clock
) -> None:
    provider = pair()
    mem.set_outage(503)
    chat.set_outage(503)
    with pytest.raises(TransientCaptionError) as caught:
        ask(provider)
    assert "fallback openai" in str(caught.value)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 0.5
    counts = (mem.count, chat.count)
    with pytest.raises(TransientCaptionError):
        ask(provider)
    assert (mem.count, chat.count) == counts  # both circuits open: nobody asked

    chat.set_outage(None)
    clock.now += 31
    assert ask(provider).fallback  # the fallback's probe came first and answered


def test_both_paused_is_a_pause(mem, clock) -> None:
    with StandinChatAPI(captions={}, api_key="sk-needed") as locked:
        caption = caption_config(mem, locked)
        assert caption.fallback is not None
        provider = FallbackProvider(
            MemoriesProvider(caption, "sk-wrong"),
            OpenAIProvider(caption.fallback, None),
            caption,
            caption.fallback,
            clock=clock,
        )
        with provider, pytest.raises(PausingCaptionError):
            ask(provider)


def test_provider_for_builds_what_the_config_says(mem, chat, monkeypatch, tmp_path) -> None:
    plain = parse_config(
        {
            "caption": {"base_url": mem.url, "api_key": KEY},
            "cameras": [{"name": "c", "path": "/tmp"}],
        }
    ).caption
    with provider_for(plain) as only:  # type: ignore[attr-defined]
        assert isinstance(only, MemoriesProvider)
    both = caption_config(mem, chat)
    # A systemd credential is the primary's: the fallback never reads it.
    (tmp_path / "api_key").write_text("sk-credential-for-the-primary")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    provider = provider_for(both, environ=environ)
    try:
        assert isinstance(provider, FallbackProvider)
        assert isinstance(provider.fallback, OpenAIProvider)
        mem.set_outage(503)
        assert ask(provider).fallback  # type: ignore[arg-type]
    finally:
        provider.close()
    assert [r.authorization for r in chat.requests] == [None]
    alone = provider_for(both, which="fallback", environ=environ)
    try:
        assert isinstance(alone, OpenAIProvider)
    finally:
        alone.close()


def test_try_acquire_never_waits(clock) -> None:
    from camwatch.gate import CaptionGate

    gate = CaptionGate(1.0, 1.0, PAUSE_PROBE, clock=clock)
    assert gate.try_acquire() is True and gate.next_probe_in() == 0.0
    gate.outage("down", None, probe=False)
    assert gate.try_acquire() is None  # open: a caller with a fallback goes there
    assert gate.next_probe_in() == 1.0
    clock.now += 1.0
    assert gate.try_acquire() is False  # the one probe
    assert gate.try_acquire() is None  # while it is out, nobody else
    gate.succeeded(probe=True)
    assert gate.try_acquire() is True
