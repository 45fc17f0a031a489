"""The caption API's request format, checked as strictly as the real API checks it.

`parse_request` takes a request's Content-Type and body and returns what it holds: an upload
(multipart/form-data: a `req` part with the prompts as JSON, then a `file` part with the image)
or a URL request (a JSON body with the prompts and `url`), and the status and reason the real API
would refuse it with, if any. `parse_multipart` splits a multipart/form-data body into `Part`s.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

IMAGE_TYPES = ("image/jpeg", "image/png")

_MAX_PARTS = 16


@dataclass
class ParsedRequest:
    """What a request to the caption API holds, as far as it could be read: for an upload the
    `req` part's JSON and the file, for a URL request the body's JSON and its `url`; `error` is
    the (status, reason) the real API would refuse it with, None if it would not."""

    content_type: str = ""
    json: dict[str, Any] | None = None
    file_name: str | None = None
    file_bytes: bytes = b""
    file_content_type: str | None = None
    url: str | None = None
    parts: list[str] = field(default_factory=list)
    part_filenames: list[str | None] = field(default_factory=list)
    part_types: list[str | None] = field(default_factory=list)
    error: tuple[int, str] | None = None


def parse_request(content_type: str, body: bytes) -> ParsedRequest:
    """Given a request's Content-Type and body, return what it holds and, if the real API would
    refuse it, the status and reason."""
    mime, params = _header_params(content_type)
    parsed = ParsedRequest(content_type=content_type)
    try:
        if mime == "multipart/form-data":
            _parse_upload(parsed, params.get("boundary", ""), body)
        elif mime == "application/json":
            _parse_url_body(parsed, body)
        else:
            parsed.error = (415, f"unsupported Content-Type {mime or '(none)'!r}")
    except _Refused as exc:
        parsed.error = (exc.status, exc.reason)
    return parsed


class _Refused(ValueError):
    """A request the real API would refuse: the reason, and the status it would answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


_PROMPT_FIELDS = {"user_prompt": str, "system_prompt": str, "thinking": bool}


def _check_fields(obj: Any, with_url: bool) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Refused("the JSON must be an object")
    expected = dict(_PROMPT_FIELDS)
    if with_url:
        expected["url"] = str
    missing = [k for k in expected if k not in obj]
    extra = [k for k in obj if k not in expected]
    if missing or extra:
        raise _Refused(f"JSON fields: missing {missing}, unexpected {extra}")
    for key, kind in expected.items():
        if not isinstance(obj[key], kind):
            raise _Refused(f"{key}: expected {kind.__name__}")
    return obj


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refused("the body is not valid JSON") from None


def _parse_url_body(parsed: ParsedRequest, body: bytes) -> None:
    obj = _load_json(body)
    parsed.json = obj if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(obj.get("url"), str):
        parsed.url = obj["url"]
    _check_fields(obj, with_url=True)
    if not re.match(r"^https?://[^/\s]+", parsed.url or ""):
        raise _Refused("url: expected an http(s) URL")


def _parse_upload(parsed: ParsedRequest, boundary: str, body: bytes) -> None:
    if not boundary:
        raise _Refused("multipart/form-data without a boundary")
    parts = parse_multipart(body, boundary)
    for part in parts:
        parsed.parts.append(part.name)
        parsed.part_filenames.append(part.filename)
        parsed.part_types.append(part.content_type)
    named = {p.name: p for p in parts}
    if "file" in named:
        parsed.file_name = named["file"].filename
        parsed.file_bytes = named["file"].content
        parsed.file_content_type = named["file"].content_type
    if "req" in named:
        obj = _load_json(named["req"].content)
        parsed.json = obj if isinstance(obj, dict) else None
    if parsed.parts != ["req", "file"]:
        raise _Refused(f"expected two parts, req then file; got {parsed.parts}")
    req, upload = parts
    if req.filename != "req.json":
        raise _Refused(f"req: expected filename 'req.json', got {req.filename!r}")
    if _header_params(req.content_type or "")[0] != "application/json":
        raise _Refused(f"req: expected type application/json, got {req.content_type!r}")
    _check_fields(_load_json(req.content), with_url=False)
    if not upload.filename or "/" in upload.filename or "\\" in upload.filename:
        raise _Refused(f"file: expected a base file name, got {upload.filename!r}")
    kind = _header_params(upload.content_type or "")[0]
    if kind not in IMAGE_TYPES:
        raise _Refused(f"file: unsupported type {upload.content_type!r}", 415)
    if not upload.content:
        raise _Refused("file: empty")
    magic = b"\x89PNG\r\n\x1a\n" if kind == "image/png" else b"\xff\xd8\xff"
    if not upload.content.startswith(magic):
        raise _Refused(f"file: the bytes are not {kind}")


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    content: bytes


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Given a multipart/form-data body and its boundary, return its parts in order. Raise
    ValueError (a _Refused) if the body is not well formed."""
    delim = b"--" + boundary.encode("latin-1")
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise _Refused("multipart: no boundary line")
        pos += 2
    parts: list[Part] = []
    for _ in range(_MAX_PARTS + 1):
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            if not parts:
                raise _Refused("multipart: no parts")
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _Refused("multipart: malformed boundary line")
        start = line_end + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise _Refused("multipart: missing closing boundary")
        parts.append(_parse_part(body[start:end]))
        pos = end + 2
    raise _Refused(f"multipart: more than {_MAX_PARTS} parts")


def _parse_part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise _Refused("multipart: a part without a blank line after its headers")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if not sep or not name.strip():
            raise _Refused("multipart: malformed part header")
        headers[name.strip().lower()] = value.strip()
    kind, params = _header_params(headers.get("content-disposition", ""))
    if kind != "form-data" or "name" not in params:
        raise _Refused("multipart: a part without Content-Disposition: form-data; name=...")
    return Part(params["name"], params.get("filename"), headers.get("content-type"), content)


_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """Given a header such as `form-data; name="file"; filename="a.jpg"`, return
    `("form-data", {"name": "file", "filename": "a.jpg"})`, the first item lowercased."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            # HTML5 form encoding (what urllib3 sends) escapes these three as percent codes.
            raw = raw.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
        if key.endswith("*"):  # RFC 5987: utf-8''percent-encoded
            charset, _, encoded = raw.partition("''")
            key = key[:-1]
            raw = urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
        params[key] = raw
    return head.strip().lower(), params
