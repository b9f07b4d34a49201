"""Stopping on SIGTERM / SIGINT the way shells and schedulers expect.

A scheduler (SLURM at a time limit, Kubernetes on eviction) sends SIGTERM; a person presses
Ctrl-C (SIGINT). Either way a fit should stop at the end of the current batch, save
``last.ckpt`` and exit with ``128 + signal`` (143 / 130): a job that was stopped must not
look finished to whatever runs it (`lipmem sweep run`, `lipmem ablation run`, a shell
script, a workflow engine).

Lightning already turns SIGTERM into a stop at the next batch boundary
(``SIGTERMException``, a ``SystemExit`` without a code, so exit status 0). The
:class:`lightning_modules.callbacks.GracefulStop` callback makes a first SIGINT take the
same path (a second one interrupts at once, without saving), saves ``last.ckpt`` when the
stop arrives, and records the signal here, so that :func:`exit_code_on_signal` can turn the
exit into 143 / 130. The runners start their jobs with :func:`run_forwarding_signals` and
record a job that ended by a signal as interrupted (:func:`was_interrupted`), to run it
again next time. This module imports no Lightning at import time: the runners use it.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# exit statuses of a job stopped by a signal: handled (128 + n) or killed by it (-n)
INTERRUPTED_CODES = frozenset({128 + int(s) for s in STOP_SIGNALS}
                              | {-int(s) for s in STOP_SIGNALS})

_received: list[int] = []  # signals that stopped a fit in this process (see GracefulStop)


def record_stop(signum: int) -> bool:
    """Remember that ``signum`` stopped the fit; False when one had already been recorded."""
    first = not _received
    _received.append(int(signum))
    return first


def was_interrupted(code: int | None) -> bool:
    """Whether a job's exit status says it was stopped by SIGTERM or SIGINT."""
    return code in INTERRUPTED_CODES


def stop_signal() -> int | None:
    """The signal that stopped a fit in this process, if any."""
    return _received[0] if _received else None


@contextmanager
def exit_code_on_signal() -> Iterator[None]:
    """Around a Lightning CLI run: a fit stopped by SIGTERM / SIGINT exits 143 / 130 (not
    Lightning's 0 for SIGTERM, 1 for Ctrl-C)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except KeyboardInterrupt as exc:
        raise SystemExit(128 + signal.SIGINT) from exc
    except SystemExit as exc:
        signum = stop_signal()
        if signum is None and isinstance(exc, SIGTERMException):
            signum = signal.SIGTERM
        if signum is None:
            raise
        raise SystemExit(128 + int(signum)) from exc


def run_forwarding_signals(argv: list[str], **popen: Any) -> tuple[int, int | None]:
    """Run a job to its end; a SIGTERM / SIGINT this process gets meanwhile is passed on to
    the job (which saves and stops) instead of ending this process first. Returns the job's
    exit status and the signal received, if any. The job runs in its own session, so a
    terminal's Ctrl-C reaches it once, through here, not twice."""
    received: list[int] = []
    proc = subprocess.Popen(argv, start_new_session=True, **popen)

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS} if main else {}
    try:
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:  # this process is being torn down: do not orphan the job
            proc.kill()
            proc.wait()
    return code, (received[0] if received else None)


__all__ = ["INTERRUPTED_CODES", "exit_code_on_signal", "record_stop", "run_forwarding_signals",
           "stop_signal", "was_interrupted"]
