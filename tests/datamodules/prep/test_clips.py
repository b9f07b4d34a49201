"""Cutting face runs into clips."""

import numpy as np
import pytest

from datamodules.prep.clips import plan_clips


def test_clips_follow_face_runs_and_usable_audio():
    found = np.ones(100, bool)
    found[40:45] = False
    spans = plan_clips(found, (0, 95), clip_frames=15, min_frames=8)
    # run 0..40: 15 + 15 + 10 (kept, >= 8); run 45..95: 15 x 3 + 5 (dropped)
    assert [(s.start, s.stop) for s in spans] == [(0, 15), (15, 30), (30, 40), (45, 60),
                                                  (60, 75), (75, 90)]
    assert [s.index for s in spans] == list(range(6))
    assert plan_clips(found, (96, 100), 15, 8) == []
    with pytest.raises(ValueError):
        plan_clips(found, (0, 100), 10, 11)
