"""The fault-injecting proxy (`camwatch.testing.chaos.ChaosProxy`) in front of a WebhookReceiver:
each fault as a plain socket and `requests` see it, the counts, reproducibility from the seed,
keep-alive, and a stop that leaves no thread behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests

from camwatch.testing import WebhookReceiver
from camwatch.testing.chaos import (
    FAULTS,
    ChaosProxy,
    Decision,
    Fault,
    Faults,
    error_503,
    garbage,
)

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

BODY = b'{"event": "camwatch.alert", "id": "chaos-1"}'


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        yield s


def request_bytes(body: bytes = BODY, path: str = "/hook", close: bool = False) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode() + body


def talk(port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, str]:
    """Send `data` on a new connection and read until the proxy ends it. Return what came and
    how it ended: `eof`, `reset` or `timeout`."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    try:
        # A reset right at accept can beat connect()'s own check of the handshake.
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionResetError:
        return bytes(got), "reset"
    with sock:
        try:
            sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(got), "reset"
        for _ in range(10_000):  # and `timeout`
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(got), "timeout"
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return bytes(got), "reset"
            except TimeoutError:
                return bytes(got), "timeout"
            if not chunk:
                return bytes(got), "eof"
            got += chunk
    return bytes(got), "timeout"


def proxy(hooks: WebhookReceiver, seed: int = 1, **faults: object) -> ChaosProxy:
    return ChaosProxy("127.0.0.1", hooks.port, seed, Faults(**faults))  # type: ignore[arg-type]


def only(p: ChaosProxy, fault: Fault) -> None:
    """Check that exactly one fault was applied, and that it was `fault`."""
    counts = p.counts
    assert counts[fault] == 1, p.summary()
    assert sum(counts.values()) == 1, p.summary()


# -- pass-through --------------------------------------------------------------------------------


def test_pass_through_relays_every_request_of_a_kept_alive_connection(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks) as p:
        for i in range(5):
            response = session.post(f"{p.url}/hook", data=BODY, timeout=5)
            assert response.status_code == 200, i
            assert response.json() == {"ok": True}
        assert p.connections == 1  # one pooled connection, five exchanges on it
        assert [d.exchange for d in p.decisions] == [0, 1, 2, 3, 4]
        assert p.counts == {"pass": 5, **{str(f): 0 for f in FAULTS}}
    assert [r.body for r in hooks.received] == [BODY] * 5


def test_a_chunked_request_is_relayed_whole(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks) as p:
        # A generator body goes out chunked; the receiver answers that with 411, relayed intact.
        response = session.post(f"{p.url}/hook", data=iter([b'{"a":', b" 1}"]), timeout=5)
        assert response.status_code == 411
        only(p, Fault.PASS)


def test_the_server_down_closes_the_connection_and_up_again_relays(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks) as p:
        hooks.go_down()
        with pytest.raises(requests.ConnectionError):
            session.post(f"{p.url}/hook", data=BODY, timeout=5)
        hooks.come_up()
        assert session.post(f"{p.url}/hook", data=BODY, timeout=5).status_code == 200


# -- each fault ----------------------------------------------------------------------------------


def test_reset_at_once_forwards_nothing(hooks: WebhookReceiver) -> None:
    with proxy(hooks, reset=1.0, reset_points=("start",)) as p:
        got, end = talk(p.port, request_bytes())
        assert (got, end) == (b"", "reset")
        only(p, Fault.RESET)
        assert p.injected[0].sent == 0
        assert p.injected[0].decision.detail == "start"
    assert hooks.count == 0


def test_reset_in_the_request_forwards_part_of_it(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    data = request_bytes()
    with proxy(hooks, reset=1.0, reset_points=("request",)) as p:
        got, end = talk(p.port, data)
        assert (got, end) == (b"", "reset")
        only(p, Fault.RESET)
        injected = p.injected[0]
        assert injected.of == len(data) and 0 <= injected.sent < len(data)
        with pytest.raises(requests.ConnectionError):
            session.post(f"{p.url}/hook", data=BODY, timeout=5)
        # Then a request that passes: once it is recorded, the torn ones had their chance.
        p.set_faults(Faults())
        marker = b'{"marker": true}'
        assert session.post(f"{p.url}/hook", data=marker, timeout=5).status_code == 200
    assert hooks.wait_for(1, 5)
    assert BODY not in [r.body for r in hooks.received]


def test_reset_in_the_answer_after_the_server_took_the_request(hooks: WebhookReceiver) -> None:
    with proxy(hooks, reset=1.0, reset_points=("answer",)) as p:
        got, end = talk(p.port, request_bytes())
        assert end == "reset"
        only(p, Fault.RESET)
        injected = p.injected[0]
        assert len(got) <= injected.sent < injected.of
        assert b"HTTP/1.1 200 OK\r\n".startswith(got[:17])
    assert [r.body for r in hooks.received] == [BODY]  # the server did take it


def test_stall_holds_the_connection_until_the_client_gives_up(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks, stall=1.0, stall_s=30.0) as p:
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            session.post(f"{p.url}/hook", data=BODY, timeout=0.3)
        only(p, Fault.STALL)
    # stop() did not wait out the 30 s stall: the client had gone, and stop wakes it anyway.
    assert time.monotonic() - started < 5
    assert hooks.count == 0


def test_stall_ends_with_a_close_after_stall_s(hooks: WebhookReceiver) -> None:
    with proxy(hooks, stall=1.0, stall_s=0.3) as p:
        started = time.monotonic()
        got, end = talk(p.port, request_bytes(), timeout=10.0)
        took = time.monotonic() - started
        assert (got, end) == (b"", "eof")
        assert 0.25 <= took < 5, took
        only(p, Fault.STALL)
    assert hooks.count == 0


def test_cut_sends_the_headers_and_part_of_the_body_then_closes(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks, cut=1.0) as p:
        got, end = talk(p.port, request_bytes())
        assert end == "eof"  # an orderly close, not a reset
        injected = p.injected[0]
        assert len(got) == injected.sent < injected.of
        head, sep, body = got.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 200 OK")
        assert len(body) < len(b'{"ok": true}')
        with pytest.raises(requests.RequestException):  # ChunkedEncodingError: IncompleteRead
            session.post(f"{p.url}/hook", data=BODY, timeout=5)
        assert p.counts["cut"] == 2, p.summary()
    assert [r.body for r in hooks.received] == [BODY, BODY]


@pytest.mark.parametrize("kind", ["bytes", "line"])
def test_garbage_instead_of_an_answer(
    hooks: WebhookReceiver, session: requests.Session, kind: str
) -> None:
    with proxy(hooks, garbage=1.0, garbage_kinds=(kind,)) as p:
        got, end = talk(p.port, request_bytes())
        assert end == "eof"
        assert got and not got.startswith(b"HTTP/")
        decision = p.injected[0].decision
        assert got == garbage(kind, decision.salt)
        with pytest.raises(requests.ConnectionError):
            session.post(f"{p.url}/hook", data=BODY, timeout=5)
        assert p.counts["garbage"] == 2, p.summary()
    assert hooks.count == 0


def test_error_answers_503_itself_and_closes(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks, error=1.0) as p:
        response = session.post(f"{p.url}/hook", data=BODY, timeout=5)
        assert response.status_code == 503
        assert response.headers["Connection"] == "close"
        assert response.json()["code"] == "0503"
        got, end = talk(p.port, request_bytes())
        assert (got, end) == (error_503(), "eof")
        assert p.counts["error"] == 2, p.summary()
    assert hooks.count == 0


# -- the dice ------------------------------------------------------------------------------------


def _run(hooks: WebhookReceiver, seed: int, connections: int) -> tuple[list[Decision], dict]:
    """Make `connections` one-request connections, one after the other, through a proxy with
    60% faults; return its decisions and counts."""
    with ChaosProxy("127.0.0.1", hooks.port, seed, Faults.spread(0.6, stall_s=0.2)) as p:
        for i in range(connections):
            _, end = talk(p.port, request_bytes(close=True), timeout=3.0)
            # A stall ends after stall_s, everything else at once.
            assert end != "timeout", (i, p.decisions[i:], p.connections, p.summary())
        return p.decisions, p.counts


def test_the_same_seed_gives_the_same_sequence(hooks: WebhookReceiver) -> None:
    first, first_counts = _run(hooks, 11, 30)
    again, again_counts = _run(hooks, 11, 30)
    other, _ = _run(hooks, 12, 30)
    assert [d.connection for d in first] == list(range(30))
    assert first == again
    assert first_counts == again_counts
    assert [d.fault for d in other] != [d.fault for d in first]
    assert len({d.fault for d in first}) >= 4, first_counts  # 60% faults: several kinds


def test_a_connection_draws_the_same_faults_whatever_the_others_do(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    """Connection N's sequence depends on the seed and N only: here connection 0 carries six
    exchanges in one run and one in the other, and connection 1 decides the same either way."""
    faults = Faults(error=0.5)
    with ChaosProxy("127.0.0.1", hooks.port, 5, faults) as p:
        for _ in range(6):
            talk_keepalive = session.post(f"{p.url}/hook", data=BODY, timeout=5)
            assert talk_keepalive.status_code in (200, 503)
        first = [d for d in p.decisions if d.connection == 1]
    with ChaosProxy("127.0.0.1", hooks.port, 5, faults) as p:
        talk(p.port, request_bytes(close=True))
        talk(p.port, request_bytes(close=True))
        second = [d for d in p.decisions if d.connection == 1]
    assert first and second
    assert (first[0].fault, first[0].fraction, first[0].salt) == (
        second[0].fault,
        second[0].fraction,
        second[0].salt,
    )


def test_set_faults_switches_to_pass_through_on_the_next_exchange(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    with proxy(hooks, error=1.0) as p:
        assert session.post(f"{p.url}/hook", data=BODY, timeout=5).status_code == 503
        p.set_faults(Faults())
        assert session.post(f"{p.url}/hook", data=BODY, timeout=5).status_code == 200
        assert p.counts["error"] == 1 and p.counts["pass"] == 1, p.summary()
        assert "error=1" in p.summary() and "pass=1" in p.summary()


def test_spread_splits_the_rate_evenly() -> None:
    faults = Faults.spread(0.3)
    assert [faults.rate(f) for f in FAULTS] == pytest.approx([0.06] * 5)
    assert faults.rate(Fault.PASS) == pytest.approx(0.7)
    assert faults.pick(0.0) is Fault.RESET
    assert faults.pick(0.299) is Fault.ERROR
    assert faults.pick(0.3) is Fault.PASS
    assert Faults().pick(0.0) is Fault.PASS


@pytest.mark.parametrize(
    "settings",
    [
        {"reset": 0.6, "stall": 0.6},
        {"cut": -0.1},
        {"error": 1.5},
        {"stall_s": 0.0},
        {"stall_s": 3600.0},
        {"reset_points": ()},
        {"reset_points": ("middle",)},
        {"garbage_kinds": ("json",)},
    ],
)
def test_faults_refuse_what_cannot_be(settings: dict) -> None:
    with pytest.raises(ValueError):
        Faults(**settings)


def test_only_loopback(hooks: WebhookReceiver) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ChaosProxy("192.0.2.1", 80, 1)
    with pytest.raises(ValueError, match="loopback"):
        ChaosProxy("127.0.0.1", hooks.port, 1, host="0.0.0.0")


# -- life cycle ----------------------------------------------------------------------------------


def test_stop_closes_held_and_idle_connections_and_joins_every_thread(
    hooks: WebhookReceiver, session: requests.Session
) -> None:
    p = ChaosProxy("127.0.0.1", hooks.port, 3, Faults()).start()
    p.start()  # idempotent
    try:
        assert session.post(f"{p.url}/hook", data=BODY, timeout=5).status_code == 200
        p.set_faults(Faults(stall=1.0, stall_s=60.0))
        held = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        held.sendall(request_bytes())
        deadline = time.monotonic() + 5
        for _ in range(500):  # until the stall is on (or 5 s)
            if p.counts["stall"] or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert p.counts["stall"] == 1, p.summary()
        started = time.monotonic()
        p.stop()
        assert time.monotonic() - started < 3
        p.stop()  # idempotent
        held.settimeout(5)
        assert held.recv(10) == b""  # closed under it
        held.close()
    finally:
        p.stop()
    # An idle pooled connection to the proxy is closed too: the next post cannot use it.
    with pytest.raises(requests.ConnectionError):
        session.post(f"{p.url}/hook", data=BODY, timeout=2)
