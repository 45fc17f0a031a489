"""Rules with `ask` end to end: the REAL daemon puts the questions in the prompt, reads the model's
JSON answers (memories.ai and OpenAI-compatible stand-ins, answers written as models write them),
alerts with `matched: ["ask: QUESTION"]`, and keeps, logs, stores and sends the caption without
the JSON; a missing answer falls back to the keywords and logs `ask_unanswered`. test-rules and
replay explain ask decisions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camwatch.testing import StandinCaptionAPI, StandinChatAPI, WebhookReceiver

from .support import ConfigWriter, Tree, assert_alert, drop, image, run_cli, wait_until

QUESTION = "Is a person lying on the ground?"
ASK_RULE = {
    "name": "person-down",
    "ask": QUESTION,
    "any": ["lying on the ground", "collapsed"],
    "severity": "critical",
}


def ask_config(config: ConfigWriter, chat: StandinChatAPI | None = None) -> dict[str, Any]:
    data = config.data()
    data["rules"] = [ASK_RULE, *[r for r in data["rules"] if r["name"] != "person-down"]]
    if chat is not None:
        prompts = {k: data["caption"][k] for k in ("user_prompt", "system_prompt")}
        data["caption"] = {
            "provider": "openai",
            "base_url": chat.base_url,
            "model": "llava:7b",
            "timeout": "5s",
            "retry": {"attempts": 2, "backoff_initial": "50ms", "backoff_max": "200ms"},
            **prompts,
        }
    return data


def stored_caption(tree: Tree, path: Path) -> str:
    db = sqlite3.connect(f"file:{tree.state / 'camwatch.db'}?mode=ro", uri=True)
    try:
        (caption,) = db.execute(
            "SELECT caption FROM images WHERE path = ?", (str(path),)
        ).fetchone()
    finally:
        db.close()
    return str(caption)


@pytest.fixture(params=["memories", "openai"])
def provider(request: pytest.FixtureRequest) -> Iterator[StandinChatAPI | None]:
    """None for the memories.ai stand-in (the `api` fixture), else an OpenAI-compatible one
    that answers `content` as a list of text parts (the tolerant reading, end to end)."""
    if request.param == "memories":
        yield None
        return
    with StandinChatAPI(captions={}, content_as_parts=True) as chat:
        yield chat


def requests_of(api: StandinCaptionAPI, chat: StandinChatAPI | None) -> list[str]:
    """Return the user prompts the daemon sent."""
    if chat is None:
        return [r.json["user_prompt"] for r in api.requests if r.json]
    return [r.user_prompt or "" for r in chat.requests]


def test_a_yes_alerts_with_the_question_and_the_json_never_leaves_the_model(
    tree: Tree,
    config: ConfigWriter,
    api: StandinCaptionAPI,
    provider: StandinChatAPI | None,
    hooks: WebhookReceiver,
    start_daemon,
) -> None:
    daemon = start_daemon(config.write(ask_config(config, provider)))
    said = (
        "A man sits slumped against the wall; it is unclear whether he is breathing.\n\n"
        '```json\n{"answers": {"Person-Down": "Yes"}}\n```'
    )
    picture = image(said)
    path = drop(tree.frontdoor / "a.jpg", picture)

    clean = "A man sits slumped against the wall; it is unclear whether he is breathing."
    event = daemon.wait_event("image_captioned", path=str(path))
    assert event["caption"] == clean
    assert event["rules"] == ["person-down"]
    wait_until(lambda: len(hooks.delivered) == 1, message="the ask alert")
    body = assert_alert(
        hooks.delivered[0],
        rule="person-down",
        camera="frontdoor",
        image=path,
        matched=[f"ask: {QUESTION}"],
        data=picture,
        severity="critical",
    )
    assert body["caption"] == clean
    assert stored_caption(tree, path) == clean
    (prompt,) = requests_of(api, provider)
    assert prompt.startswith("What is happening here?\n\nThen answer these questions")
    assert f'- "person-down": {QUESTION}' in prompt
    assert '{"answers": {"person-down": "..."}}' in prompt
    assert not daemon.named("ask_unanswered")
    assert "```" not in daemon.stderr_text


def test_a_missing_answer_falls_back_to_keywords_and_logs_ask_unanswered(
    tree: Tree, config: ConfigWriter, hooks: WebhookReceiver, start_daemon
) -> None:
    daemon = start_daemon(config.write(ask_config(config)))
    picture = image("A person lying on the ground, not moving.")
    path = drop(tree.frontdoor / "a.jpg", picture)

    logged = daemon.wait_event("ask_unanswered", path=str(path))
    assert (logged["rule"], logged["camera"], logged["level"]) == (
        "person-down",
        "frontdoor",
        "warning",
    )
    wait_until(lambda: len(hooks.delivered) == 1, message="the keyword alert")
    assert hooks.delivered[0].json["matched"] == ["lying on the ground"]

    broken = drop(tree.frontdoor / "b.jpg", image('A bench. {"answers": {"person-down": "ye'))
    daemon.wait_event("ask_unanswered", path=str(broken))
    event = daemon.wait_event("image_captioned", path=str(broken))
    assert event["rules"] == []  # no answer and no keyword: no alert
    assert event["caption"] == 'A bench. {"answers": {"person-down": "ye'  # unread: kept whole


def test_a_no_answer_overrules_the_keywords(
    tree: Tree, config: ConfigWriter, hooks: WebhookReceiver, start_daemon
) -> None:
    daemon = start_daemon(config.write(ask_config(config)))
    said = 'A poster of a person lying on the ground. {"answers": {"person-down": "no"}}'
    path = drop(tree.frontdoor / "a.jpg", image(said))
    event = daemon.wait_event("image_captioned", path=str(path))
    assert event["rules"] == [] and event["caption"] == "A poster of a person lying on the ground."
    assert hooks.delivered == []


def test_test_rules_and_replay_explain_ask_decisions(
    tree: Tree, config: ConfigWriter, start_daemon
) -> None:
    path = config.write(ask_config(config))
    done = run_cli(
        "test-rules",
        "-c",
        str(path),
        "--json",
        'A man sits on a bench. {"answers": {"person-down": "yes"}}',
        "A person lying on the ground.",
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["caption"] == "A man sits on a bench."
    assert first["matched"] == [{"rule": "person-down", "phrases": [f"ask: {QUESTION}"]}]
    assert first["answers"] == {"person-down": "yes"}
    assert second["matched"] == [{"rule": "person-down", "phrases": ["lying on the ground"]}]
    assert second["unanswered"] == ["person-down"]

    text = run_cli("test-rules", "-c", str(path), 'Bench. {"answers": {"person-down": "no"}}')
    assert "person-down: no match (ask: answered 'no')" in text.stdout

    daemon = start_daemon(path)
    image_path = drop(tree.frontdoor / "a.jpg", image('Bench. {"answers": {"person-down": "yes"}}'))
    daemon.wait_event("alert_decided", path=str(image_path), rule="person-down")
    replay = run_cli("replay", "-c", str(path), "--json")
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == ""  # stored without its answer, and "Bench." has no keyword
    assert "1 caption(s) without answers to the rules' ask questions" in replay.stderr
