"""The face to animate: a video (looped or ping-ponged to the audio's length) or a still
image, with the face found and tracked once per source frame.

Detection and tracking are data preparation's (datamodules.prep), so the crops a model
sees at inference are cut exactly like the crops it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.prep.face_detect import FaceDetector, builtin_detector, load_detector
from datamodules.prep.media import MediaError, decode_video
from datamodules.prep.tracking import FaceTrack, TrackConfig, crop_and_resize, track_faces
from datamodules.sample_limits import MAX_SOURCE_PIXELS, OversizedSample, check_source_pixels

# the detector's smallest face (HaarFaceDetector: 16 px); a smaller source cannot hold one
MIN_FACE_SIDE = 16
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MODES = ("loop", "pingpong")


class FaceInputError(ValueError):
    """The face input cannot be used; the message names the file."""


@dataclass
class FaceSource:
    path: str
    frames: np.ndarray          # uint8 (N, H, W, 3) source frames at the model's fps
    track: FaceTrack            # per source frame: square crop box
    still: bool
    mode: str = "pingpong"

    def index(self, k: int) -> int:
        """Source frame for output frame ``k``."""
        n = len(self.frames)
        if n == 1:
            return 0
        if self.mode == "loop":
            return k % n
        period = 2 * n - 2
        i = k % period
        return i if i < n else period - i

    def crop(self, k: int, size: int) -> np.ndarray:
        i = self.index(k)
        return crop_and_resize(self.frames[i], self.track.boxes[i], size)

    def frame(self, k: int) -> np.ndarray:
        return self.frames[self.index(k)]

    def box(self, k: int) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.track.boxes[self.index(k)])


def centred_square_track(frames: np.ndarray, source: str) -> FaceTrack:
    """A track whose every box is the frame's centred square: the frames are the crops."""
    t, height, width = frames.shape[:3]
    side = min(height, width)
    x0, y0 = (width - side) // 2, (height - side) // 2
    boxes = np.tile(np.array([x0, y0, x0 + side, y0 + side], np.int64), (t, 1))
    faces = np.tile(np.array([x0 + side / 2, y0 + side / 2, side], np.float64), (t, 1))
    ones = np.ones(t, bool)
    return FaceTrack(boxes, ones, ones.copy(), faces, source, ones.copy())


def even_frames(frames: np.ndarray) -> np.ndarray:
    """H.264 4:2:0 needs even sides: drop a last row/column if odd."""
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


def load_face(path: str | Path, fps: int, *, mode: str = "pingpong",
              detector: FaceDetector | str | None = None,
              max_seconds: float | None = None, crop: dict | None = None,
              max_pixels: int = MAX_SOURCE_PIXELS, full_frame: bool = False) -> FaceSource:
    """Decode ``path`` (video at ``fps``, or a still image) and track its face; ``crop``
    (margin, shift_y, detector) as `lipmem data prep` cut the training crops. Images and
    videos above ``max_pixels`` are refused from their headers, before decoding.
    ``full_frame``: no detection, every frame's centred square is the face crop (for inputs
    that already are crops, like the synthetic corpus' clips)."""
    path = Path(path)
    if mode not in MODES:
        raise ValueError(f"face mode {mode!r}: expected one of {MODES}")
    if not path.is_file():
        raise FaceInputError(f"face {path}: no such file")
    crop = crop or {}
    if detector is None:  # the checkpoint's record is data: built-in detectors only
        detector = builtin_detector(crop.get("detector"),
                                    "the model's crop record (geometry.crop.detector)")
    still = path.suffix.lower() in IMAGE_SUFFIXES
    try:
        if still:
            with Image.open(path) as image:  # reads the header only
                check_source_pixels(*image.size, f"face {path}", max_pixels)
                frames = np.asarray(image.convert("RGB"))[None]
        else:
            frames = decode_video(path, fps=fps, max_seconds=max_seconds,
                                  max_pixels=max_pixels).frames
    except OversizedSample as exc:
        raise FaceInputError(str(exc)) from exc
    except MediaError as exc:
        raise FaceInputError(f"face {exc}") from exc
    except Exception as exc:  # PIL/PyAV raise many types; all mean "cannot read"
        raise FaceInputError(f"face {path}: cannot be decoded ({type(exc).__name__}: {exc})"
                             ) from exc
    if len(frames) == 0:
        raise FaceInputError(f"face {path}: no frames")
    height, width = frames.shape[1:3]
    if min(height, width) < MIN_FACE_SIDE:
        raise FaceInputError(f"face {path} is {width}x{height} px: too small to find and crop a "
                             f"face (at least {MIN_FACE_SIDE} px a side)")
    frames = even_frames(np.ascontiguousarray(frames))
    if full_frame:
        return FaceSource(str(path), frames, centred_square_track(frames, str(path)), still,
                          mode)
    track = track_faces(frames, load_detector(detector), source=str(path),
                        margin=crop.get("margin") if crop.get("margin") is not None
                        else TrackConfig.margin,
                        shift_y=crop.get("shift_y") if crop.get("shift_y") is not None
                        else TrackConfig.shift_y)
    return FaceSource(str(path), frames, track, still, mode)
