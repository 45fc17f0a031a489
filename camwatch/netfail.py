"""What went wrong reaching a server, as a stable word for logs and a short phrase for people.

`classify` reads the exception chain requests and urllib3 build (a requests exception whose
arguments, `reason` and causes hold the urllib3 error and, under it, the socket's or ssl's) and
returns one of these kinds:

| failure       | what happened                                                    |
|---------------|------------------------------------------------------------------|
| `dns`         | the host name did not resolve                                    |
| `refused`     | nothing listens on that port (or a firewall says so)             |
| `timed out`   | no connection, or no answer, within the timeout                  |
| `tls`         | the TLS handshake failed: an untrusted certificate, not TLS, ... |
| `reset`       | the connection was reset, or closed before an answer             |
| `unreachable` | no route to the network or the host                              |
| `proxy`       | the configured proxy failed                                      |
| `connection`  | any other failure to talk to the server                          |

Answers are not classified here: their kind is `http NNN` (`http_failure`). A notify target
adds `rejected` (the service said no, Apprise does not say why) and `unsupported url`.
Nothing of the exception's text is quoted but the socket's or ssl's own few words: requests
and urllib3 put the request's path and query in theirs, and those often hold a token.
"""

from __future__ import annotations

import errno
import http
import http.client
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import requests
import urllib3.exceptions

DNS = "dns"
REFUSED = "refused"
TIMED_OUT = "timed out"
TLS = "tls"
RESET = "reset"
UNREACHABLE = "unreachable"
PROXY = "proxy"
CONNECTION = "connection"

_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN})
_CHAIN_MAX = 16  # exceptions looked at in one chain at most (a chain can loop)


@dataclass(frozen=True)
class NetFailure:
    """The kind of a failure (`failure`, one of the module's words) and a few words for people
    (`reason`)."""

    failure: str
    reason: str


def host_port(url: str) -> str:
    """Given an http(s) URL, return its `host:port`, the port made explicit (80, 443): never
    the user, password, path or query. Return "?" when the URL has no host."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "?"
    if not host:
        return "?"
    if port is None:
        port = 443 if parts.scheme.lower() == "https" else 80
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_failure(status: int) -> NetFailure:
    """Given an HTTP status, return its failure kind `http NNN` and its phrase as the reason."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "an unknown status"
    return NetFailure(f"http {status}", f"the server answered {status} {phrase}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and every exception it carries: arguments, `reason`, cause and context."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < _CHAIN_MAX:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        carried = [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            carried.append(reason)
        carried += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += carried


def _first(chain: list[BaseException], kind: type | tuple[type, ...]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, kind)), None)


def _tls_reason(chain: list[BaseException]) -> str:
    verify = _first(chain, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError) and verify.verify_message:
        return f"TLS certificate not trusted: {verify.verify_message.rstrip('.')}"
    failed = _first(chain, ssl.SSLError)
    why = getattr(failed, "reason", None)
    if isinstance(why, str) and why:
        # e.g. WRONG_VERSION_NUMBER: https:// to a port that speaks plain HTTP.
        return f"TLS handshake failed ({why.lower().replace('_', ' ')})"
    return "TLS handshake failed"


def classify(exc: BaseException, timeout: float | None = None) -> NetFailure:
    """Given what requests raised for one request (sent with `timeout` seconds, when known),
    return the kind of failure and a few words for people."""
    chain = list(_chain(exc))
    within = f" within {timeout:g}s" if timeout is not None else ""
    resolve = _first(chain, (socket.gaierror, urllib3.exceptions.NameResolutionError))
    if resolve is not None:
        gai = _first(chain, socket.gaierror)
        detail = f" ({gai.strerror.lower()})" if isinstance(gai, OSError) and gai.strerror else ""
        return NetFailure(DNS, f"the host name does not resolve{detail}")
    if _first(chain, (ssl.SSLError, urllib3.exceptions.SSLError, requests.exceptions.SSLError)):
        return NetFailure(TLS, _tls_reason(chain))
    if _first(chain, (requests.exceptions.ProxyError, urllib3.exceptions.ProxyError)):
        return NetFailure(PROXY, "the proxy did not pass the request on")
    if _first(chain, ConnectionRefusedError):
        return NetFailure(REFUSED, "connection refused: nothing listens on that port")
    if _first(chain, http.client.RemoteDisconnected):  # a ConnectionResetError too
        return NetFailure(RESET, "the server closed the connection without answering")
    if _first(chain, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return NetFailure(RESET, "the connection was reset")
    unreachable = next(
        (e for e in chain if isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS), None
    )
    if unreachable is not None:
        return NetFailure(UNREACHABLE, "no route to the host")
    # urllib3's NewConnectionError (any failure to connect) is a ConnectTimeoutError too.
    connect_timeout = any(
        isinstance(e, urllib3.exceptions.ConnectTimeoutError)
        and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain
    )
    if connect_timeout or _first(chain, requests.exceptions.ConnectTimeout):
        return NetFailure(TIMED_OUT, f"no connection{within}")
    if _first(chain, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return NetFailure(TIMED_OUT, f"no answer{within}")
    return NetFailure(CONNECTION, f"cannot talk to the server ({type(exc).__name__})")
