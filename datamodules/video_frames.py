"""Decoded PyAV frames to uint8 RGB arrays, with single-threaded libswscale.

PyAV (>= 18.1.1) keeps one ``SwsContext`` per Python thread for ``VideoFrame.reformat`` and
``to_ndarray``. A context that has scaled with slice threads owns a thread pool; a process
forked afterwards (DataLoader workers, the prep pool) inherits the context but not its
threads, and its next conversion waits for them forever. One swscale thread never starts
that pool. Nothing is lost: decoding runs in parallel across worker processes, and the
frames here are small.
"""

from __future__ import annotations

import av
import numpy as np

SWSCALE_THREADS = 1


def frame_to_rgb24(frame: av.VideoFrame, width: int | None = None, height: int | None = None,
                   interpolation: str | None = None) -> np.ndarray:
    """``frame`` as a (H, W, 3) uint8 array, resized to ``width`` x ``height`` when given."""
    return frame.to_ndarray(format="rgb24", width=width, height=height,
                            interpolation=interpolation, threads=SWSCALE_THREADS)
