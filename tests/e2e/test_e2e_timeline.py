"""The timeline page of a real run, over HTTP and in a real headless browser (Debian's
`chromium`, driven by its command line: `--dump-dom` and `--screenshot`).

The real daemon captions a run's images (the stand-in API answers with each JPEG's comment):
an alert delivered, one pending behind a webhook that is down, a failed image, one too large, a
file deleted after its alert, and a caption holding `<script>` and `<img onerror>`. The page
must list them with their rules and delivery states, load their thumbnails, keep the hostile
caption text, and say "file gone" where the file is gone.

The page is served by the daemon's own listener (`http.listen` on a free loopback port, with a
token), which logs each request at debug level: that log says which thumbnails the browser
fetched and what it got.

`CAMWATCH_TIMELINE_SCREENSHOTS=DIR` also writes the screenshots to DIR (`timeline.png` at 1280
pixels wide, `timeline-phone.png` at 412): how docs/timeline.png is made.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from PIL import Image

from camwatch.store.readonly import connect_readonly
from camwatch.testing import StandinCaptionAPI, WebhookReceiver, jpeg_with_caption, sample_images

from .support import ConfigWriter, Daemon, Tree, drop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does): the"
    " timeline is checked in a real headless browser",
)
TOKEN = "e2e-http-token-5d1c8a90"
HOSTILE = "A note taped to the door reads <script>alert(1)</script> <img src=x onerror=alert(2)>"
MAGENTA = (255, 0, 255)  # the hostile image's colour: nothing else on the page has it


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def sample(name: str) -> bytes:
    """A bundled snapshot as a JPEG (the stand-in captions a JPEG by its comment)."""
    data = next(data for file, data, _ in sample_images() if file == name)
    return data if name.endswith(".jpg") else jpeg(Image.open(io.BytesIO(data)))


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the run left: image ids by name (the database's)."""

    ids: dict[str, int]


def run_images(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> tuple[Daemon, Run]:
    """Run the real daemon over a day's worth of snapshots, one at a time (so that the ids
    follow the order below), and return it still running with what it recorded."""
    backyard = tree.root / "cams" / "backyard"
    backyard.mkdir()
    data = config.data()
    data["cameras"].append({"name": "backyard", "path": str(backyard)})
    data["caption"]["max_image_bytes"] = 200_000
    data["timezone"] = "Europe/Berlin"
    data["webhooks"].append({"name": "backup", "url": hooks2.url})
    data["http"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    data["log"]["level"] = "debug"  # each request served is logged (`http_request`)
    for rule in data["rules"]:
        if rule["name"] != "person-down":
            rule["webhooks"] = ["main"]  # person-down goes to both, the rest to main only
    path = config.write(data)
    hooks2.set_outage(503)  # the backup receiver is down: its alert stays pending
    daemon = start_daemon(path)

    def captioned(camera: Path, name: str, caption: str, base: bytes) -> None:
        file = drop(camera / name, jpeg_with_caption(caption, base))
        daemon.wait_event("image_captioned", path=str(file))

    magenta = jpeg(Image.new("RGB", (320, 240), MAGENTA))
    captioned(tree.frontdoor, "08-02-11.jpg", HOSTILE + ". A parcel lies below it.", magenta)
    api.fail_next(1, 400, body={"code": -1, "msg": "image rejected"})
    failed = drop(tree.frontdoor / "08-40-53.jpg", jpeg_with_caption("never seen", magenta))
    daemon.wait_event("image_failed", path=str(failed))
    large = jpeg_with_caption("never seen", sample("driveway-empty.jpg")) + b"\0" * 250_000
    too_large = drop(tree.driveway / "09-12-30.jpg", large)
    daemon.wait_event("image_skipped", path=str(too_large))
    captioned(
        tree.driveway,
        "09-58-04.jpg",
        "It shows an empty driveway in front of a garage on a clear morning. No one is lying"
        " on the ground and there are no vehicles in view.",
        sample("driveway-empty.jpg"),
    )
    captioned(
        tree.frontdoor,
        "11-02-31.jpg",
        "A cardboard package has been left on the doorstep in front of a closed wooden door.",
        sample("frontdoor-package.jpg"),
    )
    captioned(
        backyard,
        "13-40-00.jpg",
        "It shows a backyard with a small shed and a wooden fence under the moon. The scene is"
        " quiet and nothing unusual is happening.",
        sample("backyard-quiet-night.png"),
    )
    captioned(
        tree.driveway,
        "18-05-44.jpg",
        "A red car is parked on the driveway in front of the garage; its doors are closed.",
        sample("driveway-parked-car.jpg"),
    )
    captioned(
        tree.frontdoor,
        "21-14-07.jpg",
        "A person in a blue jacket is lying on the ground in the hallway near the door, not"
        " moving.",
        sample("frontdoor-person-down.jpg"),
    )
    daemon.wait_event("alert_delivered", count=4)  # package x2, vehicle, person-down to main
    daemon.wait_event("alert_delivery_failed", target="backup", count=2)
    (tree.frontdoor / "11-02-31.jpg").unlink()  # as after: delete, or a person tidying up
    files = {
        "hostile": "frontdoor/08-02-11.jpg",
        "failed": "frontdoor/08-40-53.jpg",
        "too-large": "driveway/09-12-30.jpg",
        "empty": "driveway/09-58-04.jpg",
        "gone": "frontdoor/11-02-31.jpg",
        "night": "backyard/13-40-00.jpg",
        "car": "driveway/18-05-44.jpg",
        "down": "frontdoor/21-14-07.jpg",
    }
    db = connect_readonly(tree.state)
    try:
        rows = dict(db.execute("SELECT camera || '/' || relpath, MAX(id) FROM images GROUP BY 1"))
    finally:
        db.close()
    ids = {name: rows[file] for name, file in files.items()}
    assert sorted(ids.values()) == list(ids.values())  # one at a time: in this order
    return daemon, Run(ids)


# -- the daemon's listener -----------------------------------------------------------------------


def base_url(daemon: Daemon, credentials: bool = False) -> str:
    """Return the address of the daemon's HTTP listener (`http.listen` port 0: the one it
    chose), with the token in it as a browser's Basic login when `credentials`."""
    port = daemon.wait_event("http_listening")["port"]
    login = f"camwatch:{TOKEN}@" if credentials else ""
    return f"http://{login}127.0.0.1:{port}"


def served(daemon: Daemon) -> dict[str, int]:
    """Return each path the listener answered (debug log), with its latest status."""
    return {e["path"]: e["status"] for e in daemon.named("http_request")}


# -- the page, parsed -----------------------------------------------------------------------------


class Dom(HTMLParser):
    """A page (or a browser's DOM dump), parsed: elements with attributes, and visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._texts: list[str] = []
        self._skip = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._skip = tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._texts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._texts).split())

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def card_ids(self) -> list[int]:
        return [int(str(a["id"]).removeprefix("image-")) for a in self.tags("article")]


def check_page(dom: Dom, run: Run) -> None:
    """What the page must show of the run, whoever rendered it."""
    ids = run.ids
    assert dom.card_ids() == sorted(ids.values(), reverse=True)
    # The hostile caption is text: no script element, no event handler, the text as written.
    assert dom.tags("script") == []
    for tag, attrs in dom.elements:
        assert not [name for name in attrs if name.lower().startswith("on")], (tag, attrs)
    assert HOSTILE in dom.text
    text = dom.text
    for words in (
        "person-down critical matched “lying on the ground”",
        "delivered webhook main",
        "pending webhook backup",
        "attempts failed (HTTP 503 from webhook 'backup')",
        "vehicle warning matched “car”",
        "package info matched “package”",
        "package info matched “parcel”",
        "Why: HTTP 400",
        "max_image_bytes 200000",
        "person-down: any 'lying on the ground' negated by 'no one'",
        "file gone",
        "file too large to show",
    ):
        assert words in text, words
    # A thumbnail for each image whose file is there; none for the one deleted.
    shown = {int(str(a["src"]).removeprefix("/thumb/")) for a in dom.tags("img")}
    assert shown == set(ids.values()) - {ids["gone"], ids["too-large"]}


# -- the tests ------------------------------------------------------------------------------------


def test_the_timeline_over_http(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    daemon, run = run_images(tree, api, hooks2, config, start_daemon)
    with requests.Session() as http:
        url = base_url(daemon)
        assert http.get(url + "/", timeout=10).status_code == 401
        page = http.get(url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert page.status_code == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        # The page must work under the listener's policy: no script, images from itself only.
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        # ... and under the stricter `default-src 'none'; img-src 'self'; style-src
        # 'unsafe-inline'`: nothing from elsewhere, no data: URI, no stylesheet to fetch.
        html = page.text
        assert "data:" not in html and "<link" not in html and "http://" not in html
        assert "<script>alert" not in html and "<img src=x" not in html
        check_page(Dom(html), run)

        http.auth = ("anyone", TOKEN)
        for name, image_id in run.ids.items():
            thumb = http.get(f"{url}/thumb/{image_id}", timeout=10)
            if name in ("gone", "too-large"):
                assert thumb.status_code == 404, name
                continue
            assert (thumb.status_code, thumb.headers["Content-Type"]) == (200, "image/jpeg"), name
            with Image.open(io.BytesIO(thumb.content)) as small:
                assert small.format == "JPEG" and small.size == (320, 240), name
        # Filters and paging over HTTP.
        alerts = Dom(http.get(url + "/?alerts=1", timeout=10).text)
        assert alerts.card_ids() == [run.ids[n] for n in ("down", "car", "gone", "hostile")]
        driveway = Dom(http.get(url + "/?camera=driveway", timeout=10).text)
        assert driveway.card_ids() == [run.ids[n] for n in ("car", "empty", "too-large")]
        older = Dom(http.get(f"{url}/?before={run.ids['empty']}", timeout=10).text)
        assert older.card_ids() == [run.ids[n] for n in ("too-large", "failed", "hostile")]
    assert daemon.terminate()[0] == 0


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run headless chromium once with a fresh profile; fail the test on a non-zero exit."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # as root in a container: no user namespace for the sandbox
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Waits (in virtual time) for the page and its images, not a fixed wall-clock sleep.
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result


def colour_pixels(png: Path, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """Return how many pixels of a screenshot are within `tolerance` of `colour`."""
    with Image.open(png) as shot:
        rgb = shot.convert("RGB")
        return sum(
            count
            for count, pixel in rgb.getcolors(rgb.width * rgb.height) or []
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))
        )


@needs_browser
def test_the_timeline_in_a_headless_browser(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    daemon, run = run_images(tree, api, hooks2, config, start_daemon)
    profile = tmp_path / "chromium-profile"
    # The browser logs in with Basic auth (the token as password), as a person would.
    url = base_url(daemon, credentials=True) + "/"
    dump = chromium(profile, "--dump-dom", url).stdout.decode()
    dom = Dom(dump)
    check_page(dom, run)
    # The hostile caption's markup is not in the DOM, its text is.
    assert "<script>alert(1)" not in dump and "&lt;script&gt;alert(1)&lt;/script&gt;" in dump
    # The browser fetched every thumbnail on the page, and got each one.
    fetched = served(daemon)
    for attrs in dom.tags("img"):
        assert fetched.get(str(attrs["src"])) == 200, (attrs["src"], fetched)

    shots = {}
    for name, size in (("timeline.png", "1280,1300"), ("timeline-phone.png", "412,915")):
        shots[name] = tmp_path / name
        chromium(profile, f"--screenshot={shots[name]}", f"--window-size={size}", url)
    # A whole page, tall enough for every card: the magenta image is the hostile one, far
    # down; seen in the picture, its thumbnail was drawn.
    tall = tmp_path / "tall.png"
    chromium(profile, f"--screenshot={tall}", "--window-size=1280,6000", url)
    for png in (*shots.values(), tall):
        with Image.open(png) as shot:
            assert shot.format == "PNG"
            colours = shot.convert("RGB").getcolors(1 << 20) or []
            assert len(colours) > 1000, f"{png.name} looks blank"
    assert colour_pixels(tall, MAGENTA) > 10_000, "the hostile image's thumbnail was not drawn"
    target = os.environ.get("CAMWATCH_TIMELINE_SCREENSHOTS")
    if target:
        for name, png in shots.items():
            shutil.copyfile(png, Path(target) / name)
    assert daemon.terminate()[0] == 0
