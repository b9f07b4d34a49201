"""Stop on SIGTERM or Ctrl-C at a batch boundary with `last.ckpt` saved (see
lightning_modules.training.signals for the exit codes the CLI then gives)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_modules.training.signals import record_stop, stop_signal

log = logging.getLogger(__name__)


class GracefulStop(Callback):
    """A first SIGINT stops like SIGTERM does in Lightning (after the current batch, through
    Lightning's own SIGTERM handler, which also tells DDP ranks); a second one interrupts at
    once. A stop by either saves ``last.ckpt`` through every checkpoint callback that keeps
    one (RunCheckpoint: with its sha256 sidecar). The LipmemCLI adds it to every trainer."""

    def __init__(self) -> None:
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:
            return  # started in the background (`cmd &`): SIGINT is meant to be ignored
        self._previous_sigint = previous
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        lightning_sigterm = signal.getsignal(signal.SIGTERM)
        first = record_stop(signal.SIGINT)
        if not first or not callable(lightning_sigterm):  # again: stop now, no save
            raise KeyboardInterrupt
        log.warning("SIGINT: stopping after this batch and saving last.ckpt (Ctrl-C again "
                    "stops at once, without saving)")
        lightning_sigterm(signal.SIGTERM, frame)

    def _restore(self) -> None:
        if self._previous_sigint is not None and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
        self._previous_sigint = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt):  # anywhere mid-step: nothing to save
            if stop_signal() is None:
                record_stop(signal.SIGINT)
            return
        if not isinstance(exception, SIGTERMException):
            return
        if stop_signal() is None:
            record_stop(signal.SIGTERM)
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return  # nothing was trained since the last save
        savers = [cb for cb in trainer.checkpoint_callbacks
                  if isinstance(cb, ModelCheckpoint) and cb.save_last]
        if not savers:
            log.warning("stopped by a signal; no checkpoint callback keeps last.ckpt, so "
                        "nothing was saved")
        for callback in savers:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
