"""Warnings about a valid configuration: things that work but expose something, or do nothing.

None of these makes a configuration invalid (exit 78 would stop a running setup over a
judgement call); `check-config` prints them on stderr and exits 0, and `run` logs the one about
the file's permissions.

- `readable_secrets`: the file holds secrets written into it (not `${VAR}` references) and
  every local user can read it.
- `address_warnings`: a URL whose host is a link-local address, where cloud metadata services
  answer (169.254.169.254 hands out the machine's cloud credentials: a webhook pointed there by
  mistake or by a hostile edit posts to it and may log its answer), and a caption API reached
  over plain http:// on another machine, which sends the API key in clear.
- `rule_warnings`: no rules, so that nothing will ever alert (a valid setup while trying things).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from camwatch.config.environment import join_path, written_text
from camwatch.config.load import read_config_tree
from camwatch.config.models import Config
from camwatch.errors import ConfigError

# Header names whose values are credentials (Authorization: Bearer ..., X-Api-Key, Cookie).
_SECRET_HEADER = re.compile(
    r"auth|token|key|secret|passw|cookie|session|signature|credential", re.IGNORECASE
)


@dataclass(frozen=True)
class ReadableSecrets:
    """A configuration file that every local user can read, and the secrets written in it."""

    path: str
    mode: int  # the permission bits, e.g. 0o644
    fields: list[str]  # where the secrets are, e.g. ["caption.api_key"]; never their values

    @property
    def fix(self) -> str:
        """Return the command that makes the file unreadable to other users."""
        return f"chmod o-r {shlex.quote(self.path)}"

    @property
    def message(self) -> str:
        """Return the warning as one line, naming the fields and the fix."""
        return (
            f"{self.path}: readable by every user (mode {self.mode:04o}) and it holds secrets"
            f" ({', '.join(self.fields)}); run: {self.fix}"
        )


def readable_secrets(path: str | os.PathLike[str]) -> ReadableSecrets | None:
    """Given a configuration file, return what it exposes if other users can read it
    (`mode & 0o004`) and a secret is written in it; else None (also when it cannot be read:
    loading it reports that)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not st.st_mode & stat.S_IROTH:
        return None
    try:
        tree = read_config_tree(path)
    except ConfigError:
        return None
    fields = inline_secret_fields(tree)
    if not fields:
        return None
    return ReadableSecrets(str(path), stat.S_IMODE(st.st_mode), fields)


def _url_has_credentials(value: str) -> bool:
    """Return whether a URL, as written, holds a user, a password or query values."""
    try:
        parts = urlsplit(written_text(value))
        if parts.username or parts.password:
            return True
        return any(v for _, v in parse_qsl(parts.query, keep_blank_values=True))
    except ValueError:
        return False


def _password_written(value: str) -> bool:
    """Return whether a URL, as written, holds a password (a broker's user name is no secret)."""
    try:
        return bool(urlsplit(written_text(value)).password)
    except ValueError:
        return False


def _apprise_haswritten_text(value: str) -> bool:
    """Return whether an Apprise URL holds anything written in the file but its scheme: most
    of an Apprise URL is a token (discord://ID/TOKEN, tgram://BOT_TOKEN/CHAT_ID)."""
    return bool(re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", written_text(value)).strip())


def inline_secret_fields(tree: Any) -> list[str]:
    """Given a parsed configuration tree (before interpolation), return the field paths of the
    secrets written in it: an inline caption.api_key, webhook secrets, webhook URLs with
    credentials or query values, credential headers, Apprise URLs, a password in mqtt.url."""
    fields: list[str] = []
    if not isinstance(tree, dict):
        return fields
    caption = tree.get("caption")
    api_key = caption.get("api_key") if isinstance(caption, dict) else None
    if isinstance(api_key, str) and written_text(api_key).strip():
        fields.append("caption.api_key")
    fallback = caption.get("fallback") if isinstance(caption, dict) else None
    api_key = fallback.get("api_key") if isinstance(fallback, dict) else None
    if isinstance(api_key, str) and written_text(api_key).strip():
        fields.append("caption.fallback.api_key")
    for i, hook in enumerate(_list(tree.get("webhooks"))):
        if not isinstance(hook, dict):
            continue
        for key, value in hook.items():
            if key == "url" and isinstance(value, str) and _url_has_credentials(value):
                fields.append(f"webhooks[{i}].url")
            elif key == "secret" and isinstance(value, str) and written_text(value).strip():
                fields.append(f"webhooks[{i}].secret")
            elif key == "headers" and isinstance(value, dict):
                for name, header in value.items():
                    if (
                        _SECRET_HEADER.search(str(name))
                        and isinstance(header, str)
                        and written_text(header).strip()
                    ):
                        fields.append(join_path(f"webhooks[{i}].headers", str(name)))
    mqtt = tree.get("mqtt")
    broker = mqtt.get("url") if isinstance(mqtt, dict) else None
    if isinstance(broker, str) and _password_written(broker):
        fields.append("mqtt.url")
    http = tree.get("http")
    token = http.get("token") if isinstance(http, dict) else None
    if isinstance(token, str) and written_text(token).strip():
        fields.append("http.token")
    for i, target in enumerate(_list(tree.get("notify"))):
        if isinstance(target, dict):
            for j, url in enumerate(_list(target.get("urls"))):
                if isinstance(url, str) and _apprise_haswritten_text(url):
                    fields.append(f"notify[{i}].urls[{j}]")
    return fields


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# AWS's instance metadata service on IPv6 (a unique-local, not a link-local, address).
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254")}


def _host(url: str) -> str | None:
    """Return a URL's host (best effort: an Apprise URL need not be a valid URL), or None."""
    try:
        return urlsplit(url.strip()).hostname or None
    except ValueError:
        return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the IP address a host names literally, or None for a name. Also the forms that
    the C resolver reads as IPv4 (2852039166, 0xa9.0xfe.0xa9.0xfe, 169.254.43518): requests
    would connect to them, so they must not slip past the check."""
    literal = host.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0)
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        if not re.fullmatch(r"[0-9a-fA-FxX.]+", literal):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(literal))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:169.254.169.254 reaches 169.254.169.254
    return address


def _metadata_warning(field: str, url: str) -> list[str]:
    host = _host(url)
    address = _address(host) if host else None
    if address is None:
        return []
    if address.is_link_local:
        return [f"{field}: {address} is a link-local address, where cloud metadata services answer"]
    if address in _METADATA_ADDRESSES:
        return [f"{field}: {address} is a cloud metadata service's address"]
    return []


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def address_warnings(config: Config) -> list[str]:
    """Return one warning per URL whose host is a link-local or cloud metadata address, one if
    the caption API is reached over plain http:// on another machine, and one if the MQTT
    password would go over plain mqtt:// to another machine. URLs are not quoted: only the field
    and the address."""
    warnings: list[str] = []
    blocks: list[tuple[str, Any]] = [("caption", config.caption)]
    if config.caption.fallback is not None:
        blocks.append(("caption.fallback", config.caption.fallback))
    for where, block in blocks:
        base = block.base_url or ""
        host = _host(base)
        # An OpenAI-compatible server may take no key (Ollama on the LAN): nothing to expose.
        keyed = block.provider == "memories" or block.api_key or block.api_key_file
        if keyed and base.strip().lower().startswith("http://") and host and not _is_loopback(host):
            warnings.append(
                f"{where}.base_url: plain http:// to a host that is not this machine ({host}):"
                " the API key would travel in clear; use https://"
            )
        warnings += _metadata_warning(f"{where}.base_url", base)
    for i, hook in enumerate(config.webhooks):
        warnings += _metadata_warning(f"webhooks[{i}].url", hook.url)
    for i, target in enumerate(config.notify):
        for j, url in enumerate(target.urls):
            warnings += _metadata_warning(f"notify[{i}].urls[{j}]", url.get_secret_value())
    if config.mqtt is not None:
        broker = config.mqtt.broker
        if not broker.tls and broker.password and not _is_loopback(broker.host):
            warnings.append(
                f"mqtt.url: plain mqtt:// to a host that is not this machine ({broker.host}):"
                " the password would travel in clear; use mqtts://"
            )
        warnings += _metadata_warning("mqtt.url", config.mqtt.url.get_secret_value())
    return warnings


def rule_warnings(config: Config) -> list[str]:
    """Return a warning if no rule is configured: every image is captioned and none alerts."""
    if not config.rules:
        return ["rules: none configured; no image will ever raise an alert"]
    return []
