"""Decoding real files: constant 25 fps by presentation time, 16 kHz mono audio, refusals."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import scipy.io.wavfile

from datamodules.prep.media import MediaError, decode_audio, decode_video, iter_frames
from tests.media_fixtures import make_talking_video, write_corrupt_video


def _index_video(path, times: list[float]) -> None:
    """Lossless grey frames whose level encodes the frame index (4 * i), shown at ``times``
    (seconds, millisecond clock): the decoded level says which source frame was picked."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 4 * i, np.uint8), "rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _picked(path, fps=25):
    video = decode_video(path, fps)
    return np.round(video.frames.reshape(len(video.frames), -1).mean(1) / 4).astype(int), video


def _nearest(times: list[float], fps: int, count: int) -> list[int]:
    """The source frame nearest each output time; on an exact tie the earlier one."""
    out = []
    for i in range(count):
        dist = np.abs(np.asarray(times) - i / fps)
        out.append(int(np.flatnonzero(dist <= dist.min() + 1e-6)[0]))
    return out


def test_30fps_source_becomes_25fps_by_nearest_timestamp(tmp_path):
    times = [i / 30 for i in range(60)]  # 2 s at 30 fps
    _index_video(tmp_path / "v.mp4", times)
    picked, video = _picked(tmp_path / "v.mp4")
    assert len(picked) == 50 and video.info.output_frames == 50
    assert picked.tolist() == _nearest(times, 25, 50)
    assert video.info.source_fps == pytest.approx(30, rel=1e-3) and not video.info.vfr
    assert len(set(picked.tolist())) == 50  # dropped frames, never repeated ones


def test_variable_frame_rate_is_resampled_by_time_and_flagged(tmp_path):
    rng = np.random.default_rng(0)
    steps = rng.choice([0.02, 0.04, 0.06], size=60)
    times = [0.0] + np.round(np.cumsum(steps), 3).tolist()
    times = [t for t in times if t < 2.0]
    _index_video(tmp_path / "vfr.mp4", times)
    picked, video = _picked(tmp_path / "vfr.mp4")
    assert video.info.vfr
    assert len(picked) == pytest.approx(round((times[-1] + 0.04) * 25), abs=1)
    assert picked.tolist() == _nearest(times, 25, len(picked))


def test_max_seconds_stops_early(tmp_path):
    _index_video(tmp_path / "v.mp4", [i / 30 for i in range(60)])
    frames = list(iter_frames(tmp_path / "v.mp4", 25, max_seconds=1.0))
    assert len(frames) == 25


def test_stereo_wav_at_44k1_becomes_16k_mono_with_its_tone(tmp_path):
    rate, seconds = 44100, 1.5
    t = np.arange(int(rate * seconds)) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    pcm = np.round(np.stack([left, right], 1) * 32767).astype(np.int16)
    scipy.io.wavfile.write(tmp_path / "tone.wav", rate, pcm)
    audio = decode_audio(tmp_path / "tone.wav", 16000)
    assert audio.sample_rate == 16000 and audio.source_rate == rate and audio.source_channels == 2
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.samples.size - 24000) <= 16
    spectrum = np.abs(np.fft.rfft(audio.samples[1000:17000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000, abs=2)
    assert 0.2 < np.abs(audio.samples[2000:-2000]).max() < 0.6  # a mix of the two channels


def test_48k_stereo_aac_in_a_30fps_video(tmp_path):
    path = make_talking_video(tmp_path / "v.mp4", seconds=1.2, fps=30, sample_rate=48000,
                              channels=2, size=64)
    audio = decode_audio(path, 16000)
    assert audio.source_rate == 48000 and audio.source_channels == 2
    assert abs(audio.samples.size - 1.2 * 16000) <= 1024 * 16000 // 48000 + 16
    assert np.abs(audio.samples).max() > 0.1
    assert len(decode_video(path, 25).frames) == 30
    chunk = audio.span(audio.start_time + 0.5, 640)
    assert chunk.shape == (640,) and np.array_equal(chunk, audio.samples[8000:8640])
    assert not audio.span(audio.end_time + 1, 10).any()


def test_refusals_name_the_file_and_reason(tmp_path):
    bad = write_corrupt_video(tmp_path / "bad.mp4")
    with pytest.raises(MediaError, match="bad.mp4") as err:
        decode_video(bad)
    assert err.value.reason == "undecodable"
    with pytest.raises(MediaError) as err:
        decode_audio(bad)
    assert err.value.reason == "undecodable"
    silent = make_talking_video(tmp_path / "silent.mp4", seconds=0.5, audio=False, size=32)
    with pytest.raises(MediaError, match="no audio stream") as err:
        decode_audio(silent)
    assert err.value.reason == "no_audio"
    with pytest.raises(MediaError, match="no such file"):
        decode_video(tmp_path / "missing.mp4")


def test_display_rotation_is_applied(tmp_path):
    """Phones store portrait video as landscape plus a display matrix: frames come out
    upright (rotated counterclockwise by the matrix's angle, as FFmpeg plays them)."""
    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :16] = 255  # a marker in the stored top-left corner
    with av.open(str(tmp_path / "rot.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = decode_video(tmp_path / "rot.mp4")
    assert video.frames.shape[1:] == (96, 64, 3) and video.info.rotation == 90
    assert video.frames[0, -8:, :8].mean() > 200 and video.frames[0, :8, :8].mean() < 50
