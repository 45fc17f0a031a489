"""The value types of the settings and their parsers: durations, http URLs, paths, time ranges,
days.

Each parser takes what YAML gives (a number, a string, or the already parsed form, so that a
Config validated again keeps its values) and raises ValueError naming the offending value;
pydantic turns that into a `field.path: message` problem. A message never quotes more of a URL
than `scheme://host:port` (`scrub_url`): the rest (user:password, a path such as
`/api/webhook/<token>`, a query string) is often a credential, and problems end up in terminals,
CI logs and, on a refused reload, the daemon's log.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# The daemon waits for durations (Event.wait, time.monotonic() + d): a wait longer than the
# platform's timeout limit (about 292 years of nanoseconds) raises OverflowError deep inside a
# worker thread. A century is longer than any setting means and still far below that limit.
MAX_DURATION = 100 * 365 * 86400.0
# Said after "expected a duration, got X": the message keeps the documented prefix
# (`rules[2].cooldown: expected a duration, got 'soon'`) and then says what would do.
DURATION_FORMS = "(write e.g. 500ms, 1.5s, 5m, 2h or 7d, or a number of seconds)"


def shown(value: Any) -> str:
    """Return `repr(value)` for a message, cut short: a 400-digit number is not worth repeating
    in full, and one of 5000 digits has no repr at all (Python's int-to-str limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}an integer of about {digits} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "...."


def parse_duration(value: Any) -> float:
    """Given a number of seconds or a string such as `500ms`, `1.5s`, `5m`, `2h`, `7d`, return
    seconds, finite and at most MAX_DURATION. Raise ValueError with the offending value
    otherwise; a value that is no duration at all also gets the forms that are."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r} {DURATION_FORMS}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration, got {shown(value)} (negative)")
        if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan and .inf
            raise ValueError(f"expected a duration, got {value!r} {DURATION_FORMS}")
        # Compared before float(): an int of 400 digits (YAML reads any length) has no float.
        seconds = value
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        # float() of 400 digits is inf, not an error: the bound below catches it.
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration, got {shown(value)} {DURATION_FORMS}")
    if not seconds <= MAX_DURATION:
        raise ValueError(f"expected a duration of at most 100 years, got {shown(value)}")
    return float(seconds)


Duration = Annotated[float, BeforeValidator(parse_duration)]


def scrub_url(url: str, keep_path: bool = False) -> str:
    """Given a URL, return only `scheme://host:port` (the port if it is given), with the path too
    if `keep_path`; never the user, password, query or fragment. Return "" when there is no
    `scheme://host` to show (then nothing of the value can be shown safely)."""
    text = url.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return ""
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:  # an unbalanced [ or an invalid IPv6 literal
        return ""
    if not host:
        return ""
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range: shown without it
        port = None
    origin = f"{parts.scheme.lower()}://{f'[{host}]' if ':' in host else host}"
    if port is not None:
        origin += f":{port}"
    # The path without its trailing slash: the caption API's endpoint is appended to it.
    return origin + (parts.path.rstrip("/") if keep_path else "")


def check_http_url(value: str) -> str:
    """Given a URL, return it if it is http(s) with a host. Raise ValueError otherwise, quoting
    the URL as `scrub_url` shows it."""
    text = value
    if re.search(r"[\s\x00-\x1f\x7f]", text):
        # Quoting such a value would show it, and a space also hides where the URL ends.
        raise ValueError("expected an http(s) URL, got one with spaces or control characters")
    has_scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text)
    try:
        parts = urlsplit(text)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError("expected an http(s) URL, got one that cannot be parsed") from None
    if not has_scheme:
        raise ValueError("expected an http(s) URL, got one without http:// or https://")
    if not host:
        scheme = text.split("://", 1)[0].lower()
        raise ValueError(f"expected an http(s) URL, got {scheme + '://'!r} without a host")
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValueError(f"expected an http(s) URL, got {scrub_url(text)!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url)]

# The caption API's paths, old and new: a base_url copied from the provider's documents often
# carries one of them, and the client then posts to `.../uploadImg/v1/understand/uploadImg`.
CAPTION_ENDPOINTS = ("/v1/understand/uploadImgFile", "/v1/understand/uploadImg")


def endpoint_in_base_url(base_url: str, endpoint: str) -> str | None:
    """Given caption.base_url and caption.endpoint, return why the base_url is wrong if its path
    ends with the endpoint or a known caption API path; else None. The message shows the
    address as `scrub_url` does, never a user, password or query."""
    try:
        path = urlsplit(base_url.strip()).path.rstrip("/")
    except ValueError:
        return None  # check_http_url has said so
    for suffix in sorted({endpoint.rstrip("/"), *CAPTION_ENDPOINTS}, key=len, reverse=True):
        if suffix and path.lower().endswith(suffix.lower()):
            found = path[len(path) - len(suffix) :]
            address = scrub_url(base_url, keep_path=True)
            address = address[: len(address) - len(suffix)] if address.endswith(found) else address
            message = (
                f"base_url: ends with the endpoint path {found!r}; give only the address"
                f" ({address or 'https://security.memories.ai'}); the path is caption.endpoint"
            )
            if found.rstrip("/") != endpoint.rstrip("/"):
                message += f" (set it to {found!r} to use that path)"
            return message
    return None


# Linux's limits (NAME_MAX, PATH_MAX). A longer name makes every os.stat() fail with
# ENAMETOOLONG, far from the setting that caused it; here it is a problem naming its field.
_NAME_MAX = 255
_PATH_MAX = 4095


def check_path(value: Path) -> Path:
    """Given a path from the settings, return it if the OS can use it: no NUL byte, no component
    longer than 255 bytes, at most 4095 bytes. Raise ValueError otherwise."""
    text = str(value)
    if "\x00" in text:
        raise ValueError("a path cannot contain a NUL byte")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a path must be valid Unicode text") from None
    short = text if len(text) <= 60 else text[:40] + "..."
    if any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
        raise ValueError(f"a path component is longer than {_NAME_MAX} bytes: {short!r}")
    if len(encoded) > _PATH_MAX:
        raise ValueError(f"a path is longer than {_PATH_MAX} bytes: {short!r}")
    return value


SafePath = Annotated[Path, AfterValidator(check_path)]

# Monday first, as datetime.weekday() counts: the rules' schedules index it by weekday. It lives
# here, not in camwatch.rules.schedule, because that package imports camwatch.config.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_time_range(value: Any) -> tuple[int, int]:
    """Given `"22:00-06:00"`, return minutes since midnight `(1320, 360)`; a range may cross
    midnight. Raise ValueError otherwise."""
    if isinstance(value, list | tuple) and len(value) == 2:
        # The parsed form, minutes since midnight (what a re-validated Config holds).
        if all(type(v) is int and 0 <= v <= 1440 for v in value):
            return value[0], value[1]
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    match = _RANGE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    return h1 * 60 + m1, h2 * 60 + m2


def parse_day(value: Any) -> str:
    """Given a day name (`mon`, `Monday`, ...), return its three-letter lowercase form."""
    if isinstance(value, str) and value.strip()[:3].lower() in DAYS:
        full = value.strip().lower()
        names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        if len(full) == 3 or full in names:
            return full[:3]
    raise ValueError(f"expected a day such as 'mon', got {value!r}")


TimeRange = Annotated[tuple[int, int], BeforeValidator(parse_time_range)]
Day = Annotated[str, BeforeValidator(parse_day)]
