"""What is asked about an image: the prompts for its camera, and how the image is presented to
the API, as a public URL (`upload: url`) or as a file with its content type (`upload: file`).

Plain values and functions, no I/O: the provider (providers/) sends what these return, and the
pipeline chooses the prompts and the URL for each job. When rules that apply to a camera have
`ask`, its user prompt ends with their questions and how to answer them (rules/answers.py).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from camwatch.config import CameraConfig, Config
from camwatch.files import content_kind
from camwatch.rules.answers import ask_paragraph, asked


@dataclass(frozen=True)
class Prompts:
    """What to ask about an image."""

    user_prompt: str
    system_prompt: str
    thinking: bool


def prompts_for(config: Config, camera: CameraConfig) -> Prompts:
    """Return the prompts for a camera: its own overrides, else the caption section's; the user
    prompt followed by the questions of the rules with `ask` that apply to the camera."""
    caption = config.caption
    user_prompt = camera.user_prompt or caption.user_prompt
    questions = asked(config.rules, camera.name)
    if questions:
        user_prompt = f"{user_prompt}\n\n{ask_paragraph(questions)}"
    return Prompts(
        user_prompt=user_prompt,
        system_prompt=camera.system_prompt or caption.system_prompt,
        thinking=caption.thinking if camera.thinking is None else camera.thinking,
    )


def prompt_fields(prompts: Prompts) -> dict[str, Any]:
    """Given the prompts, return them as the API's request fields (the same in both modes)."""
    return {
        "user_prompt": prompts.user_prompt,
        "system_prompt": prompts.system_prompt,
        "thinking": bool(prompts.thinking),
    }


_PLACEHOLDER = re.compile(r"\{(camera|relpath|name)\}")


def public_url_for(template: str, camera: str, relpath: str) -> str:
    """Given `caption.public_url` (e.g. `https://cams.example.com/{camera}/{relpath}`), a camera
    name and a file's path relative to the camera folder, return the file's public URL.
    `{relpath}` is URL-encoded segment by segment with its slashes kept; `{camera}` and `{name}`
    (the file name) are encoded whole. Other braces are left as they are."""
    segments = [s for s in relpath.replace("\\", "/").split("/") if s not in ("", ".")]
    values = {
        "camera": urllib.parse.quote(camera, safe=""),
        "relpath": "/".join(urllib.parse.quote(s, safe="") for s in segments),
        "name": urllib.parse.quote(segments[-1] if segments else "", safe=""),
    }
    # One pass, so a value that looks like a placeholder is never expanded again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def content_type_for(filename: str) -> str:
    """Given a file name, return `image/png` for `.png` (any case) and `image/jpeg` otherwise:
    only JPEG and PNG files are ever captioned."""
    return "image/png" if filename.lower().endswith(".png") else "image/jpeg"


def mime_type(data: bytes, name: str) -> str:
    """Given an image's bytes and file name, return its content type: what the bytes are if
    they say (a `.png` holding a JPEG is sent as one), else what the name says."""
    kind = content_kind(data)
    return f"image/{kind}" if kind else content_type_for(name)
