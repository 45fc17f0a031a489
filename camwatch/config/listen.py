"""`http.listen`: the address of the HTTP listener, `host:port`, and whether only this machine
can reach it.

The host is an IPv4 address, an IPv6 address in brackets (`[::1]:9108`), or a name. Only a
loopback address, or the name `localhost`, counts as loopback: any other name is treated as
reachable from elsewhere (it is not resolved while the file is loaded), so it needs a token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

# A DNS name as RFC 1123 allows it: labels of letters, digits and inner hyphens.
_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_EXAMPLES = "127.0.0.1:9108, [::1]:9108, 0.0.0.0:9108 or [::]:9108"


@dataclass(frozen=True)
class Listen:
    """Where the HTTP listener binds."""

    host: str  # an IP address (without brackets) or a name
    port: int  # 0: any free port, chosen when it binds

    @property
    def ipv6(self) -> bool:
        """Whether the host is an IPv6 address."""
        return ":" in self.host

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the address."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.ipv6 else f"{self.host}:{self.port}"


def parse_listen(value: Any) -> Listen:
    """Given `host:port` (an IPv6 host in brackets), return the Listen. Raise ValueError naming
    the value otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"expected host:port such as {_EXAMPLES}, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6 address]:port such as [::1]:9108, got {value!r}")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {value!r}") from None
        if address.version != 6:
            raise ValueError(f"brackets are for an IPv6 address, got {value!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port such as {_EXAMPLES}, got {value!r}")
        if ":" in host:
            raise ValueError(f"an IPv6 address goes in brackets, e.g. [::1]:9108, got {value!r}")
        if not host:
            raise ValueError(
                f"give the host to listen on ({_EXAMPLES} for every interface), got {value!r}"
            )
        if not _is_ipv4(host) and (re.fullmatch(r"[\d.]+", host) or not _NAME_RE.match(host)):
            raise ValueError(f"not an IP address or a host name: {host!r}")
    if not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise ValueError(f"expected a port from 0 to 65535 after the host, got {value!r}")
    return Listen(host, int(port))


def _is_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False
