"""Real media files for tests: talking-face mp4s, faceless and broken videos, audio files.

Everything is generated in the test from data that ships with installed packages: the face
is scikit-image's ``astronaut`` photograph (Haar-detectable), moved and zoomed a little per
frame, with a dark mouth that opens with the audio's loudness; the audio is a speech-like
harmonic buzz (f0 ~120 Hz with vibrato) shaped into ~4 syllables per second with pauses.
:func:`phone_speech` gives speech with known timing instead: timed phones rendered by the
synthetic corpus' speech synthesiser, and the ground-truth mouth track (openness, width,
roundness) those phones imply; passed as ``sound`` + ``mouth``, the track drives the drawn
mouth, so a prepared clip's mouth track is known exactly (:mod:`benchmarks.personal_corpus`).
Files are written through PyAV (H.264 + AAC in mp4 by default), exactly as a user's
recording would arrive. Keep clips short (1-3 s) and small (<= 192 px): tests run on 2 cores.

Usage::

    from tests.media_fixtures import make_talking_video, make_audio_file
    make_talking_video(tmp_path / "spk1" / "a.mp4", seconds=2)
    make_talking_video(p, fps=30, sample_rate=48000, channels=2)       # resampling inputs
    make_talking_video(p, audio=False)  /  face=False  /  vfr=True
    sound, mouth = phone_speech(8.0, seed=3)                           # known phones + track
    make_talking_video(p, seconds=8.0, sound=sound, mouth=mouth)      # track drives the mouth
    make_audio_file(tmp_path / "drive.wav", seconds=2)                 # .wav or .m4a
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# The astronaut's face in skimage.data.astronaut() (512 x 512): Haar box ~(177, 66, 95, 95).
_CROP = (0, 320, 70, 390)          # y0, y1, x0, x1: head and shoulders, face well inside
_MOUTH = (152.0, 147.0)            # mouth centre in the crop (x, y)
_MOUTH_HALF_WIDTH = 15.0


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(audio float32 mono in [-1, 1], envelope float32 in [0, 1] at the same rate):
    a harmonic buzz with vibrato, ~4 syllables/s, some syllables dropped as pauses."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 110.0 + 15.0 * rng.random() + 8.0 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.zeros(n)
    start = 0.05
    while start < seconds:
        length = rng.uniform(0.15, 0.3)
        if rng.random() > 0.25:  # a syllable; otherwise a pause
            idx = (t >= start) & (t < start + length)
            envelope[idx] = np.sin(np.pi * (t[idx] - start) / length) ** 2
        start += length + rng.uniform(0.02, 0.1)
    noise = rng.standard_normal(n) * 0.02
    audio = 0.5 * envelope * buzz / np.abs(buzz).max() + noise * envelope
    return audio.astype(np.float32), envelope.astype(np.float32)


def phone_speech(seconds: float, fps: int = 25, sample_rate: int = 16000, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(audio float32 mono, mouth track float32 (round(seconds * fps), 3)): random words of
    timed phones spoken by :func:`datamodules.synth.speech.synthesize_speech` in one voice
    per ``seed``, and the per-frame openness / width / roundness that those phones give
    (:mod:`datamodules.synth.mouth_track`, sampled at frame centres)."""
    from datamodules.synth.mouth_track import articulation, frame_track
    from datamodules.synth.phones import sample_phones
    from datamodules.synth.speech import sample_voice, synthesize_speech

    rng = np.random.default_rng(seed)
    voice = sample_voice(np.random.default_rng(0))  # one person: the same voice every clip
    phones = sample_phones(rng, seconds, voice.rate)
    control = articulation(phones, seconds)
    track = frame_track(control, round(seconds * fps), fps)
    audio = synthesize_speech(rng, phones, control, voice, round(seconds * sample_rate),
                              sample_rate)
    return audio, track


def _face_frames(num: int, size: int, times: np.ndarray, envelope_at: np.ndarray,
                 seed: int, width_at: np.ndarray | None = None) -> np.ndarray:
    import cv2
    import skimage.data

    y0, y1, x0, x1 = _CROP
    base = np.ascontiguousarray(skimage.data.astronaut()[y0:y1, x0:x1])
    side = y1 - y0
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    frames = np.empty((num, size, size, 3), np.uint8)
    for i in range(num):
        img = base.copy()
        opening = 2.0 + 11.0 * float(envelope_at[i])
        half_width = _MOUTH_HALF_WIDTH * (1.0 if width_at is None
                                          else 0.8 + 0.4 * float(width_at[i]))
        cv2.ellipse(img, (int(_MOUTH[0]), int(_MOUTH[1])),
                    (round(half_width), round(opening)), 0, 0, 360,
                    (60, 20, 25), thickness=-1, lineType=cv2.LINE_AA)
        t = times[i]
        zoom = 1.0 + 0.03 * np.sin(2 * np.pi * 0.4 * t + phase[0])
        dx = 6.0 * np.sin(2 * np.pi * 0.5 * t + phase[1])
        dy = 4.0 * np.sin(2 * np.pi * 0.7 * t + phase[2])
        scale = size / side * zoom
        centre = side / 2
        matrix = np.array([[scale, 0, size / 2 - scale * centre + dx],
                           [0, scale, size / 2 - scale * centre + dy]])
        frames[i] = cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_AREA,
                                   borderMode=cv2.BORDER_REFLECT)
    return frames


def _texture_frames(num: int, size: int, times: np.ndarray, seed: int) -> np.ndarray:
    """A smooth, slowly drifting colour texture: no face anywhere."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    big = gaussian_filter(rng.random((size * 2, size * 2, 3)), (size / 16, size / 16, 0))
    big = ((big - big.min()) / np.ptp(big) * 255).astype(np.uint8)
    frames = np.empty((num, size, size, 3), np.uint8)
    for i in range(num):
        off = round(times[i] * 10) % size
        frames[i] = big[off:off + size, off:off + size]
    return frames


def _frame_times(seconds: float, fps: float, vfr: bool, seed: int) -> np.ndarray:
    if not vfr:
        return np.arange(round(seconds * fps)) / fps
    # variable rate: intervals alternate irregularly between 0.5x and 1.5x the nominal one
    rng = np.random.default_rng(seed + 1)
    steps = rng.choice([0.5, 1.0, 1.5], size=int(seconds * fps * 2)) / fps
    times = np.concatenate([[0.0], np.cumsum(steps)])
    return np.round(times[times < seconds] * 1000) / 1000  # millisecond clock


def make_talking_video(path: str | os.PathLike, seconds: float = 2.0, fps: float | Fraction = 25,
                       size: int = 160, audio: bool = True, face: bool = True,
                       sample_rate: int = 16000, channels: int = 1, seed: int = 0,
                       vfr: bool = False, audio_codec: str = "aac",
                       sound: np.ndarray | None = None, mouth: np.ndarray | None = None,
                       mouth_fps: float = 25.0) -> Path:
    """Write a real talking-face video (H.264 yuv420p + AAC, container from the suffix) and
    return its path. ``face=False`` draws a faceless texture; ``audio=False`` writes no audio
    stream; ``vfr=True`` gives irregular frame timestamps (ms clock) around ``fps``;
    ``channels=2`` writes stereo (both channels the same speech, the right one quieter).
    ``sound`` (float32 mono at ``sample_rate``) replaces the buzz; ``mouth`` ((N, 3)
    openness, width, roundness at ``mouth_fps`` frame centres, see :func:`phone_speech`)
    then sets the drawn mouth's opening and width instead of the buzz's loudness."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if size % 2:
        raise ValueError(f"size={size}: H.264 yuv420p needs an even side")
    if (sound is None) != (mouth is None):
        raise ValueError("sound and mouth go together: the track must be that speech's")
    times = _frame_times(seconds, float(fps), vfr, seed)
    width_at = None
    if sound is None:
        sound, envelope = speech_like(seconds, sample_rate, seed)
        env_at = envelope[np.minimum((times * sample_rate).astype(int), envelope.size - 1)]
    else:
        sound = np.asarray(sound, np.float32)
        track = np.asarray(mouth, np.float32).reshape(-1, 3)
        index = np.minimum((times * mouth_fps).astype(int), len(track) - 1)
        env_at, width_at = track[index, 0], track[index, 1]
    frames = (_face_frames(len(times), size, times, env_at, seed, width_at) if face
              else _texture_frames(len(times), size, times, seed))
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "20", "preset": "ultrafast"}
        video.codec_context.thread_count = 1
        time_base = Fraction(1, 1000) if vfr else 1 / rate
        video.time_base = time_base
        video.codec_context.time_base = time_base
        astream = None
        if audio:
            astream = container.add_stream(audio_codec, rate=sample_rate)
            astream.layout = "stereo" if channels == 2 else "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(times[i] * 1000) if vfr else i
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if astream is not None:
            data = sound[None] if channels == 1 else np.stack([sound, 0.7 * sound])
            chunk = 1024
            for start in range(0, data.shape[1], chunk):
                part = np.ascontiguousarray(data[:, start:start + chunk])
                aframe = av.AudioFrame.from_ndarray(part, format="fltp", layout=astream.layout.name)
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def make_audio_file(path: str | os.PathLike, seconds: float = 2.0, sample_rate: int = 16000,
                    channels: int = 1, seed: int = 0) -> Path:
    """Speech-like audio (:func:`speech_like`) as ``.wav`` (16-bit PCM) or, for any other
    suffix (``.m4a``, ``.mp3`` ...), encoded by PyAV with the container's default codec."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sound, _ = speech_like(seconds, sample_rate, seed)
    data = sound[None] if channels == 1 else np.stack([sound] * channels)
    if path.suffix.lower() == ".wav":
        import scipy.io.wavfile

        pcm = np.round(np.clip(data.T, -1, 1) * 32767).astype(np.int16)
        scipy.io.wavfile.write(path, sample_rate, pcm[:, 0] if channels == 1 else pcm)
        return path
    with av.open(str(path), mode="w") as container:
        codec = {".m4a": "aac", ".mp3": "libmp3lame", ".ogg": "libvorbis",
                 ".flac": "flac"}.get(path.suffix.lower(), "aac")
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "stereo" if channels == 2 else "mono"
        for start in range(0, data.shape[1], 1024):
            part = np.ascontiguousarray(data[:, start:start + 1024])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=stream.layout.name)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_corrupt_video(path: str | os.PathLike, seed: int = 0) -> Path:
    """Bytes that are no media file at all, under a video name (an "mp4" FFmpeg refuses)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(seed).bytes(4000))
    return path


__all__ = ["make_audio_file", "make_talking_video", "phone_speech", "speech_like",
           "write_corrupt_video"]
