"""The pieces of `lipmem infer`: streamed mel windows equal the batch ones, the paste-back
only touches the generated region, faces are extended to the audio's length."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.prep.tracking import FaceTrack
from lightning_modules.generation.clip_generation import Geometry, frame_mels
from lightning_modules.generation.infer.face_input import FaceSource
from lightning_modules.generation.infer.paste import feather_mask, paste_face
from lightning_modules.generation.infer.pipeline import rechunk
from lightning_modules.generation.infer.streaming_mels import StreamingFrameMels


@pytest.mark.parametrize("chunk", [1, 640, 1234, 16000])
def test_streamed_mel_windows_equal_the_whole_clip_windows(chunk):
    cutter = Geometry().cutter()
    audio = (np.random.default_rng(0).standard_normal(16000 * 2 + 321) * 0.1).astype(np.float32)
    frames = round(audio.size * 25 / 16000)
    expected = frame_mels(audio, frames, cutter)
    stream = StreamingFrameMels(cutter)
    got: dict[int, np.ndarray] = {}
    for part in rechunk(iter([audio]), chunk):
        got.update(stream.push(part))
    got.update(stream.finish())
    assert sorted(got) == list(range(frames))
    for k in range(frames):
        np.testing.assert_array_equal(got[k], expected[k])
    # bounded memory: only the audio a future window can reach is kept
    assert stream.buffer.size < 16000 * 0.5


def test_stream_waits_only_for_its_lookahead():
    cutter = Geometry().cutter()
    stream = StreamingFrameMels(cutter)
    assert stream.lookahead_seconds == pytest.approx(0.145)
    # 1 s of audio: frames whose window ends by then (centre + 0.1 s + half an FFT) are out
    ready = stream.push(np.zeros(16000, np.float32))
    last = ready[-1][0]
    assert (last + 0.5) / 25 + stream.lookahead_seconds - 0.5 / 25 <= 1.0 + 1e-9
    assert (last + 1.5) / 25 + stream.lookahead_seconds - 0.5 / 25 > 1.0 - 0.0125


def test_paste_changes_only_the_generated_region():
    geometry = Geometry(image_size=48)
    mask = geometry.lower_face_mask().numpy()
    frame = np.full((120, 160, 3), 40, np.uint8)
    face = np.full((48, 48, 3), 220, np.uint8)
    box = (50, 10, 146, 106)  # 96 px square, partly outside nothing
    alpha = feather_mask(mask, 96)
    out = paste_face(frame, face, box, alpha)
    changed = np.abs(out.astype(int) - frame.astype(int)).sum(-1) > 0
    assert changed[10:106, 50:146].sum() == changed.sum()  # nothing outside the box
    rows = np.flatnonzero(changed.any(1))
    assert rows.min() >= 10 + round(geometry.lower_face_mask().top * 96)  # lower face only
    centre = out[10 + 72, 50 + 48]
    assert (centre == 220).all()  # the middle of the generated region is the generated face
    # a box hanging off the frame edge is clipped, not an error
    edge = paste_face(frame, face, (-30, 60, 66, 156), alpha)
    assert edge.shape == frame.shape


def test_feather_is_a_ramp_inside_the_mask():
    mask = Geometry(image_size=48).lower_face_mask().numpy()
    alpha = feather_mask(mask, 96)
    hard = feather_mask(mask, 96, feather=0.0)
    assert alpha.max() == pytest.approx(1.0, abs=1e-3)
    assert alpha[hard == 0].max() < 0.005  # (next to) nothing outside the generated region
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 50  # a soft edge, not a step


def test_face_video_is_ping_ponged_or_looped():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    track = FaceTrack(np.zeros((4, 4), np.int64), np.ones(4, bool), np.ones(4, bool),
                      np.zeros((4, 3)))
    pingpong = FaceSource("v.mp4", frames, track, still=False, mode="pingpong")
    assert [pingpong.index(k) for k in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    loop = FaceSource("v.mp4", frames, track, still=False, mode="loop")
    assert [loop.index(k) for k in range(6)] == [0, 1, 2, 3, 0, 1]
    still = FaceSource("i.png", frames[:1], track, still=True)
    assert {still.index(k) for k in range(5)} == {0}
