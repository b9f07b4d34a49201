"""Frame conversion keeps working in processes forked after the parent decoded video."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from datamodules.sample_format import decode_video, encode_video
from datamodules.video_frames import frame_to_rgb24


def _clip() -> bytes:
    rng = np.random.default_rng(0)
    return encode_video(rng.integers(0, 256, (6, 96, 128, 3), dtype=np.uint8), fps=25)


def _decode_in_child(data: bytes, out: mp.Queue) -> None:
    frames, _ = decode_video(data)
    out.put(frames.shape)


@pytest.mark.timeout(120)
def test_a_forked_worker_decodes_after_the_parent_did():
    data = _clip()
    parent_frames, _ = decode_video(data)  # leaves this thread's swscale context behind
    ctx = mp.get_context("fork")  # how DataLoader workers and the prep pool start
    out = ctx.Queue()
    child = ctx.Process(target=_decode_in_child, args=(data, out))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "a forked process hung converting frames after the parent had converted"
    assert child.exitcode == 0
    assert out.get(timeout=5) == parent_frames.shape


def test_frames_are_resized_by_swscale_when_asked():
    import io

    import av

    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)[None].repeat(2, 0)
    with av.open(io.BytesIO(encode_video(smooth, fps=25))) as container:
        frame = next(container.decode(video=0))
        full = frame_to_rgb24(frame)
        half = frame_to_rgb24(frame, width=64, height=48, interpolation="AREA")
    assert full.shape == (96, 128, 3) and full.dtype == np.uint8
    assert half.shape == (48, 64, 3)
    # an area filter averages: the half-size image is close to 2x2 means of the full one
    means = full.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(half.astype(float) - means).mean() < 8
