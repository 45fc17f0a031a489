"""The broker's address, from `mqtt.url`: `mqtt://[user[:password]@]host[:port]`, or `mqtts://`
for TLS (the broker's certificate verified against the system's CAs, its name checked).

The user and the password are credentials: a message about the URL shows `scheme://host:port`
at most, and the daemon registers both for log redaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PORTS = {"mqtt": 1883, "mqtts": 8883}
FORMS = "mqtt://[user:password@]host[:port] or mqtts://... for TLS"


@dataclass(frozen=True)
class Broker:
    """Where the broker is and who we are to it."""

    tls: bool
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """Return `host:port` (an IPv6 host in brackets): what logs and errors name."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def shown(self) -> str:
        """Return the URL without its credentials: `mqtts://host:port`."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.address}"


def parse_broker(url: str) -> Broker:
    """Given an `mqtt.url`, return the Broker. Raise ValueError with a message that quotes no
    more of the URL than its scheme, host and port."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ValueError(f"not a URL this can read; expected {FORMS}") from None
    scheme = parts.scheme.lower()
    if scheme not in PORTS:
        got = f"scheme {scheme!r}" if scheme and "://" in text else "no scheme"
        raise ValueError(f"expected {FORMS}, got {got}")
    if not host:
        raise ValueError(f"no host; expected {FORMS}")
    shown = f"{scheme}://{f'[{host}]' if ':' in host else host}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown}: a path, query or fragment means nothing to a broker; {FORMS}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise ValueError(f"{shown}: a password without a user name")
    return Broker(scheme == "mqtts", host, port or PORTS[scheme], username, password)
