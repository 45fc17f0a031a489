"""The exceptions camwatch raises, and what each one means to the caller.

CamwatchError
├── UsageError                  the command line is wrong: exit 64
├── ConfigError                 invalid configuration: exit 78, one message per problem
├── StateError                  the state database cannot be written (disk full, read-only)
├── ImageError                  this file is not read: skipped with the reason
│   ├── UnsafePath              a symbolic link, not a regular file, or outside the folder
│   └── TooLarge                larger than caption.max_image_bytes
├── CaptionError                the caption API did not give a caption
│   ├── TransientCaptionError   worth retrying later (outage, timeout, 429/5xx, garbled answer)
│   ├── PermanentCaptionError   this image will never caption (400/404/413/415/422, code -1)
│   ├── PausingCaptionError     every image would fail the same way: pause captioning
│   │   ├── AuthError           401/403 (or codes 0401/0403): the key is wrong
│   │   └── CreditsError        402 (or code 0402): credits are exhausted
│   └── CaptionAborted          shutdown was requested while waiting to retry
└── DeliveryError               an alert did not reach a target
    ├── DeliveryFailed          not this time (refused connection, timeout, 5xx): retried
    └── DeliveryRefused         never (404/410, an URL no Apprise plugin takes): dead letter
"""

from __future__ import annotations


class CamwatchError(Exception):
    """Base of every error camwatch raises on purpose."""


class UsageError(CamwatchError):
    """A command-line argument that does not fit the configuration: exit 64."""


class ConfigError(CamwatchError):
    """The configuration is invalid; `problems` has one message per problem with its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StateError(CamwatchError):
    """The durable state cannot be read or written."""


class ImageError(CamwatchError):
    """A file that is not read at all; the message is the reason it is skipped."""


class UnsafePath(ImageError):
    """The path leaves the camera's folder or is not a regular file."""


class TooLarge(ImageError):
    """The file is larger than the configured maximum."""


class CaptionError(CamwatchError):
    """The caption API did not give a caption."""


class TransientCaptionError(CaptionError):
    """A failure worth retrying; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentCaptionError(CaptionError):
    """This image will never get a caption; retrying it would only burn tokens."""


class PausingCaptionError(CaptionError):
    """Every image would fail the same way until an operator acts: captioning must pause."""


class AuthError(PausingCaptionError):
    """The API refused the key (401/403)."""


class CreditsError(PausingCaptionError):
    """The account has no credits left (402)."""


class CaptionAborted(CaptionError):
    """Shutdown was requested while a request waited for its next try."""


class DeliveryError(CamwatchError):
    """An alert did not reach a target. Besides the message, what the log shows as fields (each
    None where it does not apply): `failure`, the kind of failure in a stable word or two
    ("refused", "timed out", "tls", "dns", "reset", "http 503", ... see camwatch/netfail.py);
    `reason`, the same for people; `address`, the target's `host:port` (never its credentials,
    path or query); `url`, which of a notify target's URLs (`urls[1]`)."""

    def __init__(
        self,
        message: str,
        *,
        failure: str | None = None,
        reason: str | None = None,
        address: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.reason = reason
        self.address = address
        self.url = url

    def fields(self) -> dict[str, str]:
        """Return the structured fields that are set, for a log line."""
        named = {"failure": self.failure, "reason": self.reason, "address": self.address}
        named["url"] = self.url
        return {key: value for key, value in named.items() if value is not None}


class DeliveryFailed(DeliveryError):
    """A delivery attempt failed in a way that may pass (connection refused, timeout, 5xx):
    the alert is tried again with backoff."""


class DeliveryRefused(DeliveryError):
    """The target will never take this alert as configured (404/410, an URL no plugin
    understands): retrying for a week would only hide it, so it goes to the dead letters."""
