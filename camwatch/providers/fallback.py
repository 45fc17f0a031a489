"""`caption.fallback`: a second provider for the images the first cannot caption right now.

Each provider has a circuit of its own (a `CaptionGate`, the same breaker the pipeline has):

    image ──► primary circuit closed, or its probe due? ──yes──► primary ──answer──► caption
                      │ no (open: an outage;                       │ outage or 401/402/403:
                      │     paused: 401/402/403)                   │ its circuit opens/pauses
                      ▼                                            ▼
              fallback circuit closed, or its probe due? ──yes──► fallback ──► caption
                      │ no                                   (fallback: true in the log)
                      ▼
              raise what the pipeline's own gate understands: wait and try again

The primary is probed on its circuit's schedule as before (after an outage within 30 s, after a
pause every `pause_probe`); the first answer closes its circuit and every image goes to it again.
A permanent refusal from the primary (400, 413, ...) is about the image, not the provider: it
fails the image, as without a fallback. When neither can caption, what is raised keeps the
behaviour of a camwatch without fallback: the pipeline's gate opens (an outage, if either may
come back soon) or pauses (the primary paused and the fallback no help), and the queue is kept.

The fallback never receives the primary's key: it is built from its own block (keys.py).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from camwatch.errors import (
    CaptionAborted,
    CaptionError,
    PausingCaptionError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.gate import CaptionGate, GateState
from camwatch.log import get_logger
from camwatch.prompts import Prompts
from camwatch.providers import CaptionResult, Provider

log = get_logger(__name__)

_MIN_WAIT_S = 0.5  # the shortest wait suggested when neither provider can caption

Ask = Callable[[Provider, Any], CaptionResult]


class FallbackProvider:
    """The primary provider while it can caption, else the fallback. Thread-safe."""

    def __init__(
        self,
        primary: Provider,
        fallback: Provider,
        primary_block: Any,
        fallback_block: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Given both providers and their settings blocks (`retry.backoff_max` and
        `pause_probe` set each circuit's periods), build the pair. `clock` drives the
        circuits (tests step it)."""
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name
        self.primary_gate = _circuit(primary_block, clock)
        self.fallback_gate = _circuit(fallback_block, clock)
        self._lock = threading.Lock()
        self._in_use = False  # whether the last caption came from the fallback

    def __repr__(self) -> str:
        return f"FallbackProvider({self.primary!r}, fallback={self.fallback!r})"

    # -- the Provider interface --------------------------------------------------------------

    def caption_file(
        self,
        data: bytes,
        filename: str,
        prompts: Prompts,
        logger: Any = None,
        content_type: str | None = None,
    ) -> CaptionResult:
        """Caption an image's bytes with the primary, or the fallback while the primary cannot
        (see the module docstring). Raise a CaptionError subclass if neither gives a caption."""
        return self.route(
            lambda provider, lg: provider.caption_file(data, filename, prompts, lg, content_type),
            logger,
        )

    def caption_url(self, url: str, prompts: Prompts, logger: Any = None) -> CaptionResult:
        """Caption an image by its public URL, as `caption_file` does."""
        return self.route(lambda provider, lg: provider.caption_url(url, prompts, lg), logger)

    def close(self) -> None:
        """Close both providers. Idempotent."""
        try:
            self.primary.close()
        finally:
            self.fallback.close()

    def __enter__(self) -> FallbackProvider:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- routing -----------------------------------------------------------------------------

    def route(self, ask: Ask, logger: Any = None) -> CaptionResult:
        """Given a call to make on a provider (`ask(provider, logger)`), make it on the primary
        if its circuit lets it through, else (or when the primary then fails in a way that
        concerns every image) on the fallback. Return the caption; raise a CaptionError
        subclass if neither gives one."""
        logger = log if logger is None else logger
        primary_error: CaptionError | None = None
        admitted = self.primary_gate.try_acquire()
        if admitted is not None:
            probe = admitted is False
            try:
                result = ask(self.primary, logger)
            except CaptionAborted:
                self.primary_gate.released(probe)
                raise
            except PermanentCaptionError:
                # The primary answered: it is up, and this image is the problem.
                self._primary_answered(probe)
                raise
            except Exception as exc:
                primary_error = self._failed(self.primary_gate, self.primary, exc, probe)
            else:
                if self._primary_answered(probe):
                    result = dataclasses.replace(result, primary_resumed=True)
                return result
        return self._by_fallback(ask, primary_error, logger)

    def _by_fallback(
        self, ask: Ask, primary_error: CaptionError | None, logger: Any
    ) -> CaptionResult:
        admitted = self.fallback_gate.try_acquire()
        if admitted is None:
            raise self._unavailable(primary_error, None)
        probe = admitted is False
        bind = getattr(logger, "bind", None)
        bound = bind(provider=self.fallback.name, fallback=True) if bind else logger
        try:
            result = ask(self.fallback, bound)
        except CaptionAborted:
            self.fallback_gate.released(probe)
            raise
        except PermanentCaptionError as exc:
            self.fallback_gate.succeeded(probe)
            raise self._unavailable(primary_error, exc) from None
        except Exception as exc:
            error = self._failed(self.fallback_gate, self.fallback, exc, probe, fallback=True)
            raise self._unavailable(primary_error, error) from None
        self.fallback_gate.succeeded(probe)
        with self._lock:
            starting, self._in_use = not self._in_use, True
        if starting:
            logger.warning(
                "caption_fallback_in_use",
                provider=self.fallback.name,
                primary=self.primary.name,
                reason=str(primary_error) if primary_error else self.primary_gate.reason,
            )
        return dataclasses.replace(result, fallback=True, primary_error=primary_error)

    def _primary_answered(self, probe: bool) -> bool:
        """Record that the primary answered; return whether that ended its outage or pause."""
        recovered = self.primary_gate.succeeded(probe)
        with self._lock:
            ending, self._in_use = self._in_use, False
        if ending:
            log.info("caption_fallback_ended", provider=self.primary.name)
        return recovered

    @staticmethod
    def _failed(
        gate: CaptionGate, provider: Provider, exc: Exception, probe: bool, fallback: bool = False
    ) -> CaptionError:
        """Record on a provider's circuit that a call failed for every image (an outage, a
        pause); return the error as a CaptionError."""
        fields: dict[str, Any] = {"provider": provider.name}
        if fallback:
            fields["fallback"] = True
        if isinstance(exc, PausingCaptionError):
            gate.pause(str(exc), probe, **fields)
            return exc
        if isinstance(exc, TransientCaptionError):
            gate.outage(str(exc), exc.retry_after, probe, **fields)
            return exc
        # Not a caption error (providers turn those into transient ones): an outage all the
        # same, so that a probe is always released and the circuit never wedges.
        log.error("caption_unexpected_error", error=type(exc).__name__, **fields)
        error = TransientCaptionError(f"unexpected error ({type(exc).__name__})")
        gate.outage(str(error), None, probe, **fields)
        return error

    def _unavailable(
        self, primary_error: CaptionError | None, fallback_error: CaptionError | None
    ) -> CaptionError:
        """Return the error to raise when neither provider captioned: transient (the pipeline's
        gate opens briefly) if either may be back soon, else what the primary's state is (a
        pause)."""
        primary_paused = self.primary_gate.state is GateState.PAUSED
        fallback_soon = fallback_error is None or isinstance(fallback_error, TransientCaptionError)
        if self.fallback_gate.state is GateState.PAUSED:
            fallback_soon = False
        said = str(primary_error) if primary_error else (self.primary_gate.reason or "unavailable")
        if fallback_error is not None:
            said += f"; fallback {self.fallback.name}: {fallback_error}"
        elif self.fallback_gate.reason:
            said += f"; fallback {self.fallback.name}: {self.fallback_gate.reason}"
        if primary_paused and not fallback_soon:
            if isinstance(primary_error, PausingCaptionError):
                return primary_error
            return PausingCaptionError(said)
        waits = [self.primary_gate.next_probe_in()]
        if fallback_soon:
            waits.append(self.fallback_gate.next_probe_in())
        return TransientCaptionError(said, max(min(waits), _MIN_WAIT_S))


def _circuit(block: Any, clock: Callable[[], float]) -> CaptionGate:
    """Return a closed circuit with the periods of a provider block."""
    gate = CaptionGate(0.05, 0.05, block.pause_probe, clock=clock)
    gate.tune(block)
    return gate
