"""The second provider end to end: the REAL daemon captioning through an OpenAI-compatible server
(the chat completions stand-in on 127.0.0.1), a fallback that takes over while the memories.ai
primary is down or paused and hands back when it answers, check-config's provider lines, and
`camwatch caption --provider`."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from camwatch.testing import StandinCaptionAPI, StandinChatAPI, WebhookReceiver

from .support import (
    API_KEY,
    ConfigWriter,
    Tree,
    assert_alert,
    drop,
    image,
    run_cli,
    wait_until,
)

MODEL = "llava:7b"


@pytest.fixture
def chat() -> Iterator[StandinChatAPI]:
    """An OpenAI-compatible server on 127.0.0.1 that needs no key (as Ollama on the box)."""
    with StandinChatAPI(captions={}, api_key=None, model=MODEL) as server:
        yield server


def openai_block(chat: StandinChatAPI) -> dict[str, Any]:
    return {
        "provider": "openai",
        "base_url": chat.base_url,
        "model": MODEL,
        "timeout": "5s",
        "retry": {"attempts": 2, "backoff_initial": "50ms", "backoff_max": "200ms"},
        "pause_probe": "1s",
    }


def with_caption(config: ConfigWriter, **caption: Any) -> dict[str, Any]:
    data = config.data()
    data["caption"] = {**copy.deepcopy(data["caption"]), **caption}
    return data


def test_the_daemon_captions_through_an_openai_compatible_server(
    tree: Tree, config: ConfigWriter, chat: StandinChatAPI, hooks: WebhookReceiver, start_daemon
) -> None:
    data = config.data()
    prompts = {k: data["caption"][k] for k in ("user_prompt", "system_prompt")}
    data["caption"] = {**openai_block(chat), **prompts}
    daemon = start_daemon(config.write(data))
    picture = image("A person lying on the ground near the door.")
    path = drop(tree.frontdoor / "a.jpg", picture)

    event = daemon.wait_event("image_captioned", path=str(path))
    assert event["provider"] == "openai" and "fallback" not in event
    assert event["tokens"] > 0
    wait_until(lambda: len(hooks.delivered) == 1, message="the alert")
    assert_alert(
        hooks.delivered[0],
        rule="person-down",
        camera="frontdoor",
        image=path,
        matched=["lying on the ground"],
        data=picture,
    )
    (req,) = chat.requests
    assert req.status == 200 and req.authorization is None
    assert req.json is not None and req.json["model"] == MODEL
    assert req.image == picture and req.image_type == "image/jpeg"
    assert (req.system_prompt, req.user_prompt) == (
        prompts["system_prompt"],
        prompts["user_prompt"],
    )


def test_the_fallback_captions_while_the_primary_is_down_then_hands_back(
    tree: Tree,
    config: ConfigWriter,
    api: StandinCaptionAPI,
    chat: StandinChatAPI,
    hooks: WebhookReceiver,
    start_daemon,
) -> None:
    daemon = start_daemon(config.write(with_caption(config, fallback=openai_block(chat))))
    api.set_outage(503)
    first = drop(tree.frontdoor / "1.jpg", image("A parcel on the doorstep."))
    event = daemon.wait_event("image_captioned", path=str(first))
    assert (event["provider"], event["fallback"]) == ("openai", True)
    assert event["caption"] == "A parcel on the doorstep."
    wait_until(lambda: len(hooks.delivered) == 1, message="the fallback's alert")
    assert hooks.delivered[0].json["rule"] == "package"
    assert all(r.status == 503 for r in api.requests)  # the primary was tried first
    daemon.wait_event("caption_fallback_in_use", provider="openai", primary="memories")

    api.set_outage(None)  # the primary answers again: its next probe (0.2 s on) takes it back
    providers = []
    for n in range(2, 60):  # images until one reaches the primary: bounded, a few in practice
        path = drop(tree.frontdoor / f"{n}.jpg", image(f"A quiet porch, frame {n}."))
        event = daemon.wait_event("image_captioned", path=str(path))
        providers.append((event["provider"], event.get("fallback", False)))
        if event["provider"] == "memories":
            break
    assert providers[-1] == ("memories", False), providers
    assert set(providers[:-1]) <= {("openai", True)}
    daemon.wait_event("caption_fallback_ended", provider="memories")
    assert api.requests[-1].status == 200
    after = chat.count
    last = drop(tree.frontdoor / "last.jpg", image("A car in the street."))
    assert daemon.wait_event("image_captioned", path=str(last))["provider"] == "memories"
    assert chat.count == after  # the primary is used again, the fallback no more


def test_a_paused_primary_401_goes_to_the_fallback_which_never_gets_its_key(
    tree: Tree,
    config: ConfigWriter,
    api: StandinCaptionAPI,
    chat: StandinChatAPI,
    start_daemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMWATCH_API_KEY", "sk-revoked-key-0000")
    daemon = start_daemon(config.write(with_caption(config, fallback=openai_block(chat))))
    path = drop(tree.frontdoor / "a.jpg", image("A cat on the mat."))

    event = daemon.wait_event("image_captioned", path=str(path))
    assert (event["provider"], event["fallback"]) == ("openai", True)
    paused = daemon.wait_event("captioning_paused")
    assert paused["provider"] == "memories" and "HTTP 401" in paused["reason"]
    assert [r.status for r in api.requests] == [401]
    assert [r.authorization for r in chat.requests] == [None]
    assert "sk-revoked-key-0000" not in daemon.stderr_text


def test_check_config_prints_the_provider_lines(
    config: ConfigWriter, api: StandinCaptionAPI, chat: StandinChatAPI
) -> None:
    path = config.write(with_caption(config, fallback=openai_block(chat)))
    done = run_cli("check-config", "-c", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"  provider: memories {api.url}/v1/understand/uploadImg (key set)" in lines
    assert (
        f"  fallback: openai {chat.base_url}/chat/completions model={MODEL} max_tokens=300"
        " temperature=0 (no key) (while the provider cannot)"
    ) in lines
    assert API_KEY not in done.stdout + done.stderr


def test_check_config_refuses_an_openai_block_without_a_model(
    config: ConfigWriter, chat: StandinChatAPI
) -> None:
    block = openai_block(chat)
    del block["model"]
    done = run_cli("check-config", "-c", str(config.write(with_caption(config, fallback=block))))
    assert done.returncode == 78
    assert done.stderr.startswith("camwatch: caption.fallback.model: required with provider openai")


def test_caption_by_hand_with_each_provider(
    tree: Tree, config: ConfigWriter, api: StandinCaptionAPI, chat: StandinChatAPI
) -> None:
    path = config.write(with_caption(config, fallback=openai_block(chat)))
    picture = drop(tree.outside / "p.jpg", image("A fox in the garden."))
    for wanted, by in (("memories", "memories"), ("openai", "openai"), ("fallback", "openai")):
        done = run_cli("caption", str(picture), "-c", str(path), "--provider", wanted)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "A fox in the garden.\n"
        assert f"captioned by {by}," in done.stderr
    assert (api.count, chat.count) == (1, 2)

    api.set_outage(503)  # without --provider: as the daemon, the fallback while it is down
    done = run_cli("caption", str(picture), "-c", str(path))
    assert done.returncode == 0 and "captioned by openai (the fallback)" in done.stderr

    alone = config.write()  # memories only
    done = run_cli("caption", str(picture), "-c", str(alone), "--provider", "openai")
    assert done.returncode == 64
    assert "neither caption.provider nor caption.fallback.provider is 'openai'" in done.stderr


def test_the_demo_runs_against_the_openai_stand_in() -> None:
    done = run_cli("demo", "--provider", "openai", timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "stand-in OpenAI-compatible API http://127.0.0.1:" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("demo: 5/5 images captioned, 3/3 alerts received"), last
