"""Alert bodies, timestamps, the HMAC signature, webhook headers, and the delivery backoff."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from camwatch import __version__
from camwatch.alerts import (
    Alert,
    alert_body,
    alert_candidates,
    iso_utc,
    new_event_id,
    notify_body,
)
from camwatch.config import NotifyConfig, WebhookConfig, parse_config
from camwatch.rules import RuleSet
from camwatch.senders.webhook import sign, webhook_headers

DETECTED = 1795435201.512  # 2026-11-23T12:00:01.512Z
ALERTED = 1795435204.02  # 2026-11-23T12:00:04.020Z


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (DETECTED, "2026-11-23T12:00:01.512Z"),
        (ALERTED, "2026-11-23T12:00:04.020Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (0.0009, "1970-01-01T00:00:00.000Z"),  # milliseconds are truncated, never rounded up
        (1795435201.9999, "2026-11-23T12:00:01.999Z"),
    ],
)
def test_iso_utc(timestamp: float, text: str) -> None:
    assert iso_utc(timestamp) == text


def test_alert_body_has_the_spec_fields_in_order() -> None:
    body = alert_body(
        Alert(
            event_id="6f1c0a52-0000-4000-8000-000000000000",
            rule="person-down",
            severity="critical",
            camera="frontdoor",
            image="/srv/cameras/frontdoor/2026-11-23/12-00-01.jpg",
            sha256="ab" * 32,
            caption="It shows a person lying on the ground. Café.",
            matched=("lying on the ground",),
            detected_at=DETECTED,
            alerted_at=ALERTED,
        )
    )
    assert isinstance(body, str)
    payload = json.loads(body)
    assert list(payload) == [
        "id",
        "event",
        "rule",
        "severity",
        "camera",
        "image",
        "sha256",
        "caption",
        "matched",
        "detected_at",
        "alerted_at",
    ]
    assert payload == {
        "id": "6f1c0a52-0000-4000-8000-000000000000",
        "event": "camwatch.alert",
        "rule": "person-down",
        "severity": "critical",
        "camera": "frontdoor",
        "image": "/srv/cameras/frontdoor/2026-11-23/12-00-01.jpg",
        "sha256": "ab" * 32,
        "caption": "It shows a person lying on the ground. Café.",
        "matched": ["lying on the ground"],
        "detected_at": "2026-11-23T12:00:01.512Z",
        "alerted_at": "2026-11-23T12:00:04.020Z",
    }
    assert "Café" in body  # UTF-8 text, not \\u escapes


def test_event_ids_are_fresh_uuids() -> None:
    ids = {new_event_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_sign_matches_a_known_hmac_sha256_vector() -> None:
    # RFC 4231, test case 2.
    assert sign(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_sign_covers_the_exact_bytes() -> None:
    assert sign(b'{"a": 1}', "s") != sign(b'{"a":1}', "s")
    assert sign(b"x", "s") != sign(b"x", "t")


def _hook(**kw: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"name": "ops", "url": "https://hooks.example/x", **kw})


def test_webhook_headers_with_a_secret() -> None:
    body = b'{"id": "e1"}'
    hook = _hook(secret="s3cret-long-enough-for-tests", headers={"X-Team": "night-shift"})
    headers = webhook_headers("e1", body, hook, now=1795435204.9)
    assert headers == {
        "User-Agent": f"camwatch/{__version__}",
        "X-Team": "night-shift",
        "Content-Type": "application/json",
        "X-Camwatch-Event-Id": "e1",
        "X-Camwatch-Signature": sign(body, "s3cret-long-enough-for-tests"),
        "webhook-id": "e1",
        "webhook-timestamp": "1795435204",
        "webhook-signature": headers["webhook-signature"],
    }
    assert headers["webhook-signature"].startswith("v1,")


@pytest.mark.parametrize(
    "secret", ["s3cret-long-enough-for-tests", "whsec_" + base64.b64encode(b"k" * 24).decode()]
)
def test_standard_webhooks_signatures_verify_with_their_library(secret: str) -> None:
    from standardwebhooks import Webhook

    body = b'{"id": "e9", "caption": "caf\xc3\xa9"}'
    headers = webhook_headers("e9", body, _hook(secret=secret))
    # The library base64-decodes its secret (after `whsec_`, if present); our key for a plain
    # secret is its UTF-8 bytes, so a receiver with a plain secret hands it base64-encoded.
    key = secret if secret.startswith("whsec_") else base64.b64encode(secret.encode()).decode()
    assert Webhook(key).verify(body, headers) == json.loads(body)
    tampered = body.replace(b"e9", b"e8")
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(key).verify(tampered, headers)


def test_each_attempt_signs_its_own_timestamp() -> None:
    hook = _hook(secret="s3cret-long-enough-for-tests")
    first = webhook_headers("e1", b"{}", hook, now=1000.0)
    later = webhook_headers("e1", b"{}", hook, now=1300.0)
    assert first["webhook-timestamp"] != later["webhook-timestamp"]
    assert first["webhook-signature"] != later["webhook-signature"]
    same = ("X-Camwatch-Signature", "X-Camwatch-Event-Id", "webhook-id")
    assert all(first[name] == later[name] for name in same)


def test_webhook_headers_without_a_secret_are_unsigned() -> None:
    for hook in (_hook(), _hook(secret="")):
        headers = webhook_headers("e2", b"{}", hook)
        assert "X-Camwatch-Signature" not in headers
        assert headers["X-Camwatch-Event-Id"] == "e2"


def test_configured_headers_cannot_replace_the_protocol_ones() -> None:
    hook = _hook(
        secret="s",
        headers={"Content-Type": "text/plain", "X-Camwatch-Event-Id": "forged"},
    )
    headers = webhook_headers("e3", b"{}", hook)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Camwatch-Event-Id"] == "e3"


def test_notify_body_fills_the_templates() -> None:
    target = NotifyConfig.model_validate(
        {"name": "phones", "urls": ["json://127.0.0.1:1/"], "title": "{severity}: {rule} {nope}"}
    )
    stored = json.loads(
        notify_body(target, {"severity": "critical", "rule": "r", "caption": "c", "image": "/i"})
    )
    assert stored == {"title": "critical: r {nope}", "body": "c", "image": "/i"}


def test_notify_body_stores_the_captioned_bytes_for_attach_image_only() -> None:
    fields = {"severity": "critical", "rule": "r", "caption": "c", "image": "/cams/front/a.jpg"}
    attach = NotifyConfig.model_validate(
        {"name": "phones", "urls": ["json://127.0.0.1:1/"], "attach_image": True}
    )
    plain = NotifyConfig.model_validate({"name": "pager", "urls": ["json://127.0.0.1:1/"]})
    stored = json.loads(notify_body(attach, fields, b"\xff\xd8image"))
    assert stored["attachment"] == {
        "name": "a.jpg",
        "base64": base64.b64encode(b"\xff\xd8image").decode(),
    }
    # Without attach_image (or without the bytes) nothing is stored to attach.
    assert "attachment" not in json.loads(notify_body(plain, fields, b"\xff\xd8image"))
    assert "attachment" not in json.loads(notify_body(attach, fields))


def test_alert_candidates_give_each_attaching_target_the_bytes() -> None:
    config = parse_config(
        {
            "caption": {"api_key": "k" * 8},
            "cameras": [{"name": "front", "path": "/nonexistent/cams"}],
            "rules": [{"name": "person", "any": ["person"]}],
            "notify": [
                {"name": "phones", "urls": ["json://127.0.0.1:1/"], "attach_image": True},
                {"name": "pager", "urls": ["json://127.0.0.1:1/"]},
            ],
        }
    )
    decisions = RuleSet(config.rules).matching("a person", "front")
    (candidate,) = alert_candidates(
        config,
        decisions,
        "front",
        "/nonexistent/cams/a.jpg",
        "ab" * 32,
        "a person",
        DETECTED,
        ALERTED,
        image_data=b"captioned bytes",
    )
    phones = json.loads(candidate.messages["phones"])
    assert base64.b64decode(phones["attachment"]["base64"]) == b"captioned bytes"
    assert "attachment" not in json.loads(candidate.messages["pager"])
    assert "captioned bytes" not in candidate.body  # the webhook body carries no image
