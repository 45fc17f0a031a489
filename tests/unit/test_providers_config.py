"""The configuration of providers: `caption.provider`, `model`, `max_tokens`, `temperature`,
`fallback`, and `rules[].ask`; every problem named by its field path; which key each provider
block sends (never the primary's to the fallback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from camwatch.config import parse_config
from camwatch.errors import ConfigError
from camwatch.providers.keys import provider_key, provider_keys

CAMERAS = [{"name": "c", "path": "/tmp"}]
LOCAL = {"provider": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "llava:7b"}


def problems(caption: dict[str, Any] | None = None, rules: list[Any] | None = None) -> list[str]:
    data: dict[str, Any] = {"cameras": CAMERAS}
    if caption is not None:
        data["caption"] = caption
    if rules is not None:
        data["rules"] = rules
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_the_defaults_are_memories_as_before() -> None:
    caption = parse_config({"cameras": CAMERAS}).caption
    assert caption.provider == "memories" and caption.fallback is None
    assert caption.base_url == "https://security.memories.ai"
    assert caption.model is None and caption.max_tokens is None and caption.temperature is None


def test_an_openai_block_with_its_keys() -> None:
    caption = parse_config(
        {"caption": {**LOCAL, "max_tokens": 120, "temperature": 0.2}, "cameras": CAMERAS}
    ).caption
    assert (caption.provider, caption.model, caption.max_tokens, caption.temperature) == (
        "openai",
        "llava:7b",
        120,
        0.2,
    )


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (
            {"provider": "opneai"},
            "caption.provider: expected 'memories' or 'openai', got 'opneai';"
            " did you mean 'openai'?",
        ),
        (
            {"provider": "openai", "base_url": "http://127.0.0.1:11434/v1"},
            "caption.model: required with provider openai",
        ),
        (
            {"provider": "openai", "model": "llava:7b"},
            "caption.base_url: required with provider openai: the API root",
        ),
        (
            {**LOCAL, "base_url": "http://127.0.0.1:11434/v1/chat/completions"},
            "caption.base_url: ends with '/chat/completions'; give the API root only"
            " (e.g. http://127.0.0.1:11434/v1)",
        ),
        ({**LOCAL, "endpoint": "/v1/x"}, "caption.endpoint: not used with provider openai"),
        ({"model": "llava:7b"}, "caption.model: only used with provider openai"),
        ({"max_tokens": 100}, "caption.max_tokens: only used with provider openai"),
        ({"temperature": 0}, "caption.temperature: only used with provider openai"),
        ({**LOCAL, "max_tokens": 0}, "caption.max_tokens: expected at least 1, got 0"),
        (
            {**LOCAL, "max_tokens": "lots"},
            "caption.max_tokens: expected a whole number, got 'lots'",
        ),
        ({**LOCAL, "temperature": 3}, "caption.temperature: expected at most 2"),
        ({**LOCAL, "temperature": -1}, "caption.temperature: expected at least 0"),
        ({**LOCAL, "model": "  "}, "caption.model: must not be empty"),
        ({**LOCAL, "model": "a\nb"}, "caption.model: expected a model name"),
        (
            {"fallback": {"base_url": "http://h/v1", "model": "m"}},
            "caption.fallback.provider: required",
        ),
        ({"fallback": "yes"}, "caption.fallback: expected a section of settings"),
        (
            {"fallback": {"provider": "openai", "base_url": "http://h/v1"}},
            "caption.fallback.model: required with provider openai",
        ),
        (
            {"fallback": {"provider": "openai", "model": "m"}},
            "caption.fallback.base_url: required with provider openai",
        ),
        (
            {"fallback": {**LOCAL, "user_prompt": "x"}},
            "caption.fallback.user_prompt: unknown key here",
        ),
        (
            {"fallback": {**LOCAL, "fallback": {"provider": "memories"}}},
            "caption.fallback.fallback: unknown key here",
        ),
        (
            {"fallback": {**LOCAL, "temperature": 9}},
            "caption.fallback.temperature: expected at most 2",
        ),
        ({"fallback": {"provider": "memories", "model": "m"}}, "caption.fallback.model: only used"),
        (
            {"fallback": {"provider": "memories"}},
            "caption.fallback: the same provider, address and model as caption itself",
        ),
        ({**LOCAL, "fallback": LOCAL}, "caption.fallback: the same provider, address and model"),
    ],
)
def test_every_new_caption_key_has_its_config_error(caption, expected) -> None:
    found = problems(caption)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"name": "r", "ask": ""}, "rules[0].ask: must not be empty"),
        (
            {"name": "r", "ask": "Is it " + "very " * 80 + "dark?"},
            "rules[0].ask: expected at most 300",
        ),
        ({"name": "r", "ask": 5}, "rules[0].ask: expected text, got 5"),
        ({"name": "r"}, "rules[0]: a rule needs at least one of any, all, regex or ask"),
        ({"name": "r", "ask": "Is it dark?", "any": ["!!"]}, "rules[0].any: a phrase needs"),
    ],
)
def test_ask_has_its_config_errors(rule, expected) -> None:
    found = problems(rules=[rule])
    assert found[0].startswith(expected), found


def test_ask_alone_is_a_rule_and_is_put_on_one_line() -> None:
    config = parse_config(
        {"cameras": CAMERAS, "rules": [{"name": "r", "ask": "  Is a person\n lying down? "}]}
    )
    assert config.rules[0].ask == "Is a person lying down?"


# -- keys ----------------------------------------------------------------------------------------


def caption_of(caption: dict[str, Any]) -> Any:
    return parse_config({"caption": caption, "cameras": CAMERAS}).caption


def test_openai_needs_no_key_and_reads_its_own(tmp_path: Path) -> None:
    assert provider_key(caption_of(LOCAL), "caption", {}) is None
    assert provider_key(caption_of({**LOCAL, "api_key": " sk-1 "}), "caption", {}) == "sk-1"
    (tmp_path / "key").write_text("sk-file\n")
    with_file = caption_of({**LOCAL, "api_key_file": str(tmp_path / "key")})
    assert provider_key(with_file, "caption", {}) == "sk-file"


def test_the_primary_may_use_the_systemd_credential_the_fallback_never(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("sk-credential")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    caption = caption_of({**LOCAL, "fallback": {**LOCAL, "model": "moondream"}})
    assert provider_keys(caption, environ) == ["sk-credential", None]
    memories = caption_of({"fallback": LOCAL})
    assert provider_keys(memories, environ) == ["sk-credential", None]


def test_a_memories_fallback_needs_a_key_of_its_own() -> None:
    caption = caption_of({**LOCAL, "api_key": "sk-openai", "fallback": {"provider": "memories"}})
    with pytest.raises(ConfigError) as caught:
        provider_keys(caption, {})
    (problem,) = caught.value.problems
    assert problem.startswith("caption.fallback.api_key: no API key: memories.ai needs one")
    assert "sk-openai" not in problem
    own = parse_config(
        {
            "caption": {
                **LOCAL,
                "api_key": "sk-openai",
                "fallback": {"provider": "memories", "api_key": "${FALLBACK_KEY}"},
            },
            "cameras": CAMERAS,
        },
        environ={"FALLBACK_KEY": "sk-own"},
    ).caption
    assert provider_keys(own, {}) == ["sk-openai", "sk-own"]


def test_an_unreadable_fallback_key_file_names_its_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    caption = caption_of({"fallback": {**LOCAL, "api_key_file": str(missing)}, "api_key": "k"})
    with pytest.raises(ConfigError) as caught:
        provider_keys(caption, {})
    assert caught.value.problems[0].startswith(
        f"caption.fallback.api_key_file: cannot read '{missing}'"
    )


# -- check-config's warnings -----------------------------------------------------------------------


def test_a_key_over_plain_http_to_another_host_is_warned_about_per_block() -> None:
    from camwatch.config import address_warnings

    lan = {**LOCAL, "base_url": "http://192.168.1.20:11434/v1"}
    keyless = parse_config({"caption": {"fallback": lan}, "cameras": CAMERAS})
    assert address_warnings(keyless) == []  # no key: nothing travels that is secret
    keyed = parse_config({"caption": {"fallback": {**lan, "api_key": "k"}}, "cameras": CAMERAS})
    (warning,) = address_warnings(keyed)
    assert warning.startswith(
        "caption.fallback.base_url: plain http:// to a host that is not this machine (192.168.1.20)"
    )
    metadata = {**LOCAL, "base_url": "http://169.254.169.254/v1"}
    found = address_warnings(parse_config({"caption": metadata, "cameras": CAMERAS}))
    assert found == ["caption.base_url: 169.254.169.254 is a link-local address, where cloud"
                     " metadata services answer"]  # fmt: skip


def test_an_inline_fallback_key_in_a_readable_file_is_found(tmp_path: Path) -> None:
    from camwatch.config import readable_secrets

    path = tmp_path / "config.yaml"
    path.write_text(
        "caption:\n  fallback:\n    provider: openai\n    base_url: https://api.openai.com/v1\n"
        "    model: gpt-4o-mini\n    api_key: sk-written-inline\ncameras: []\n"
    )
    path.chmod(0o644)
    found = readable_secrets(path)
    assert found is not None and found.fields == ["caption.fallback.api_key"]
