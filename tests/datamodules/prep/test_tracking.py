"""Detections -> steady crop boxes: smoothing, gap filling, face choice, crops, detectors."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.prep.face_detect import FaceDetector, HaarFaceDetector, load_detector
from datamodules.prep.media import decode_video
from datamodules.prep.tracking import (
    NoFaceError,
    TrackConfig,
    crop_and_resize,
    detect_keyframes,
    track_faces,
    track_from_detections,
)
from tests.media_fixtures import make_talking_video


def _path(n: int = 100) -> np.ndarray:
    """A smooth true face path: centre x, centre y, size."""
    t = np.arange(n) / 25
    return np.stack([200 + 30 * np.sin(2 * np.pi * 0.3 * t), 150 + 10 * np.sin(2 * np.pi * 0.2 * t),
                     np.full(n, 100.0)], axis=1)


def _dets(path: np.ndarray, jitter: float = 0.0, seed: int = 0) -> list[list[tuple]]:
    rng = np.random.default_rng(seed)
    out = []
    for cx, cy, s in path + rng.normal(0, jitter, path.shape):
        out.append([(round(cx - s / 2), round(cy - s / 2), round(s),
                     round(s), 1.0)])
    return out


def _centres(track) -> np.ndarray:
    return np.stack([(track.boxes[:, 0] + track.boxes[:, 2]) / 2,
                     (track.boxes[:, 1] + track.boxes[:, 3]) / 2], axis=1)


def test_smoothing_reduces_jitter():
    truth = _path()
    noisy = track_from_detections(_dets(truth, jitter=4.0), TrackConfig(smooth=0, median=1))
    smooth = track_from_detections(_dets(truth, jitter=4.0), TrackConfig(smooth=2.0))
    err_raw = np.abs(_centres(noisy) - truth[:, :2]).mean()
    err_smooth = np.abs(_centres(smooth) - truth[:, :2]).mean()
    assert err_smooth < 0.6 * err_raw
    # frame-to-frame shake (second difference) drops even more
    shake = lambda c: np.abs(np.diff(c, n=2, axis=0)).mean()
    assert shake(_centres(smooth)) < 0.3 * shake(_centres(noisy))


def test_boxes_are_square_with_the_margin():
    track = track_from_detections(_dets(_path(10)), TrackConfig(margin=0.25, smooth=0))
    sides = track.boxes[:, 2] - track.boxes[:, 0]
    assert np.array_equal(sides, track.boxes[:, 3] - track.boxes[:, 1])
    assert np.all(sides == 150)


def test_short_gaps_are_interpolated_long_gaps_split_the_track():
    truth = _path(100)
    dets = _dets(truth)
    for i in range(20, 26):  # 6 frames lost: bridged
        dets[i] = []
    for i in range(50, 70):  # 20 frames lost: a real gap
        dets[i] = []
    track = track_from_detections(dets, TrackConfig(max_gap=12, smooth=0, median=1))
    assert track.found[20:26].all() and not track.detected[20:26].any()
    assert np.abs(_centres(track)[20:26] - truth[20:26, :2]).max() < 3.0  # near the true path
    assert not track.found[50:70].any()
    assert track.runs() == [(0, 50), (70, 100)]
    assert len(track.boxes) == 100  # every frame still has a box to crop with


def test_a_distant_second_face_does_not_steal_the_track():
    dets = _dets(_path(30))
    for i in (10, 11):  # a bigger face elsewhere appears for two frames
        dets[i] = dets[i] + [(600, 400, 160, 160, 2.0)]
    track = track_from_detections(dets, TrackConfig(smooth=0, median=1))
    assert np.abs(_centres(track)[10:12, 0] - _path(30)[10:12, 0]).max() < 2.0


def test_no_detection_anywhere_names_the_source():
    with pytest.raises(NoFaceError, match="clip.mp4: no face detected in any of its 5 frames"):
        track_from_detections([[]] * 5, source="clip.mp4")


def test_crop_pads_outside_the_frame():
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[:, :, 0] = np.arange(60)[None, :]  # red ramp left -> right
    crop = crop_and_resize(frame, (40, 0, 80, 40), 40)  # 20 of 40 columns outside
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    assert np.all(crop[:, 25:, 0] == 59)  # replicated right edge
    black = crop_and_resize(frame, (40, 0, 80, 40), 40, pad="black")
    assert np.all(black[:, 25:] == 0) and black[:, :15, 0].min() >= 40
    assert not crop_and_resize(frame, (100, 100, 120, 120), 16).any()  # entirely outside


def test_track_faces_on_a_real_video(tmp_path):
    path = make_talking_video(tmp_path / "v.mp4", seconds=1.0, size=160)
    frames = decode_video(path, 25).frames
    track = track_faces(frames, load_detector(None), source=str(path))
    assert track.found.all() and track.detected.mean() > 0.9
    sides = track.boxes[:, 2] - track.boxes[:, 0]
    assert 55 < sides.mean() < 90 and np.ptp(sides) < 10
    crop = crop_and_resize(frames[0], track.boxes[0], 64)
    assert crop.shape == (64, 64, 3)
    # the face fills the crop: the Haar detector finds it again, centred and large
    found = HaarFaceDetector(min_size=0.3).detect(crop)
    assert found, "no face in the crop"
    x, _y, w, _h, _ = max(found, key=lambda b: b[2])
    assert abs(x + w / 2 - 32) < 8 and w > 35


def test_track_faces_without_a_face(tmp_path):
    path = make_talking_video(tmp_path / "tex.mp4", seconds=0.4, size=64, face=False)
    with pytest.raises(NoFaceError, match="tex.mp4"):
        track_faces(decode_video(path).frames, load_detector("haar"), source=str(path))


class _Fixed:
    def __init__(self, box=(1, 2, 30, 30)):
        self.box = tuple(box)

    def detect(self, frame_rgb):
        return [(*self.box, 1.0)]


def test_load_detector_by_alias_class_path_or_instance():
    assert isinstance(load_detector(None), HaarFaceDetector)
    custom = load_detector("datamodules.prep.face_detect:HaarFaceDetector", {"max_side": 64})
    assert isinstance(custom, HaarFaceDetector) and custom.max_side == 64
    mine = _Fixed()
    assert load_detector(mine) is mine and isinstance(mine, FaceDetector)
    assert track_faces(np.zeros((3, 50, 50, 3), np.uint8), mine, smooth=0).found.all()
    with pytest.raises(ValueError, match="cannot import 'S3FD' from 'nowhere.faces'"):
        load_detector("nowhere.faces.S3FD")
    with pytest.raises(ValueError, match="no detect"):
        load_detector("collections.OrderedDict")


class _ByIndex:
    """A detector whose answer depends on the frame's value (frames are filled with their
    index): a face moving smoothly, then a cut to another place at frame 23, lost from
    frame 40 to 47."""

    def __init__(self):
        self.calls: list[int] = []

    def detect(self, frame_rgb):
        i = int(frame_rgb[0, 0, 0])
        self.calls.append(i)
        if 40 <= i < 48:
            return []
        x = 100 + i if i < 23 else 400 + i
        return [(x, 50, 80, 80, 1.0)]


def test_keyframes_detect_densely_only_where_neighbours_disagree():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(60)]
    sparse = _ByIndex()
    dets = detect_keyframes(frames, sparse.detect, every=5)
    checked = [i for i, d in enumerate(dets) if d is not None]
    # keyframes 0, 5, ..., 55 and the last frame; densely around the cut (20..25) and the
    # lost stretch (35..40, 45..50)
    dense = set(range(20, 26)) | set(range(35, 41)) | set(range(45, 51))
    assert set(checked) == set(range(0, 60, 5)) | {59} | dense
    assert sorted(sparse.calls) == checked  # each checked frame detected exactly once
    every = track_from_detections([_ByIndex().detect(f) for f in frames], TrackConfig(max_gap=12))
    track = track_from_detections(dets, TrackConfig(max_gap=12))
    assert track.runs() == every.runs()
    assert np.abs(track.boxes - every.boxes).max() <= 1  # a linear path: interpolation is exact
    assert np.array_equal(track.detected & track.checked, every.detected & track.checked)
    assert detect_keyframes(frames, _ByIndex().detect, every=1) == [
        _ByIndex().detect(f) for f in frames]


def test_haar_size_hint_skips_small_scales_but_finds_the_same_face(tmp_path):
    frames = decode_video(make_talking_video(tmp_path / "v.mp4", seconds=0.4, size=192)).frames
    haar = HaarFaceDetector()
    for frame in frames[::3]:
        full = haar.detect(frame)
        assert full
        side = max(b[2] for b in full)
        assert haar.detect(frame, min_face=0.6 * side) == full
        assert haar.detect(frame, min_face=1.5 * side) == []  # nothing that large
