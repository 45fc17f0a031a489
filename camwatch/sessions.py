"""HTTP sessions for a long-running daemon: what requests reads from the environment, read once."""

from __future__ import annotations

import requests


def settle_environment(session: requests.Session, url: str, netrc: bool = True) -> None:
    """Given a session that posts to one URL, read once what requests would otherwise read from
    the environment on every request (proxies and NO_PROXY, REQUESTS_CA_BUNDLE, and with `netrc`
    ~/.netrc) and fix it on the session. A daemon's environment does not change, and the
    per-request scan of os.environ was a quarter of a webhook delivery's CPU (bench/)."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    netrc_auth = requests.utils.get_netrc_auth(url) if netrc else None
    session.trust_env = False
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    if netrc_auth:
        session.auth = netrc_auth
