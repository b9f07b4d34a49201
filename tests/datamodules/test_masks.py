"""LowerFaceMask: shapes, regions, top override, bbox and validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from datamodules import face_layout as fl
from datamodules.masks import REGIONS, SHAPES, LowerFaceMask

S = 96


def rows_cols(mask: LowerFaceMask) -> tuple[np.ndarray, np.ndarray]:
    m = mask.tensor()[0].numpy()
    return np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))


@pytest.mark.parametrize("shape,region", list(itertools.product(SHAPES, REGIONS)))
def test_hidden_area_is_the_lower_face_and_covers_the_mouth(shape, region):
    mask = LowerFaceMask(shape, region, image_size=S)
    t = mask.tensor()
    assert t.shape == (1, S, S) and t.dtype.is_floating_point
    assert set(np.unique(t.numpy())) == {0.0, 1.0}
    rows, cols = rows_cols(mask)
    assert rows[0] / S >= fl.EYE_Y  # nothing above the eyes is hidden
    assert rows[0] / S <= fl.MOUTH_Y - 0.05  # starts above the mouth
    mouth_row = int(fl.MOUTH_Y * S)
    lo, hi = int((0.5 - fl.MOUTH_HALF_WIDTH) * S), int((0.5 + fl.MOUTH_HALF_WIDTH) * S)
    assert t[0, mouth_row, lo:hi].min() == 1.0  # the whole mouth line is hidden
    assert t[0, : int(fl.EYE_Y * S)].sum() == 0
    y0, y1, x0, x1 = mask.bbox()
    assert (y0, y1, x0, x1) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    assert t[0, y0:y1, x0:x1].sum() == t.sum()
    d = mask.describe()
    assert d["shape"] == shape and d["region"] == region and d["bbox"] == [y0, y1, x0, x1]
    assert 0 < d["hidden_fraction"] < 0.7


def test_regions_order_the_top_edge():
    tops = {r: LowerFaceMask("rectangle", r).bbox()[0] for r in REGIONS}
    assert tops["below_eyes"] < tops["nose_to_chin"] < tops["lips"]
    assert tops["nose_to_chin"] == pytest.approx(fl.NOSE_TIP_Y * S, abs=1)


def test_shapes_differ():
    rect, semi, half = (LowerFaceMask(s).tensor() for s in SHAPES)
    assert not rect.equal(semi) and not rect.equal(half)
    assert semi.sum() < rect.sum() < half.sum()
    assert (semi <= rect).all() and (rect <= half).all()  # nested: same top, same face width
    # half_face: full width down to the image bottom; rectangle stops at the chin
    assert half[0, -1].min() == 1 and rect[0, -1].max() == 0
    assert rect[0, int(fl.CHIN_Y * S) - 1].max() == 1
    # semicircle: widest at the flat top edge, narrowing towards the chin
    y0 = LowerFaceMask("semicircle").bbox()[0]
    widths = semi[0].sum(dim=1)
    assert widths[y0] > widths[int(0.85 * S)] > widths[int(fl.CHIN_Y * S) - 1]


def test_top_override():
    default = LowerFaceMask("half_face", "nose_to_chin")
    moved = LowerFaceMask("half_face", "nose_to_chin", top=0.5)
    assert moved.bbox()[0] == 48 and default.bbox()[0] == int(np.ceil(fl.NOSE_TIP_Y * S - 0.5))
    assert moved.describe()["top"] == 0.5
    small = LowerFaceMask("rectangle", top=0.5, image_size=32)
    assert small.tensor().shape == (1, 32, 32) and small.bbox()[0] == 16


@pytest.mark.parametrize("top", [0.0, 1.0, -0.2, 1.5])
def test_top_outside_unit_interval_rejected(top):
    with pytest.raises(ValueError, match=rf"top={top!r}"):
        LowerFaceMask(top=top)


def test_top_below_the_mouth_rejected():
    with pytest.raises(ValueError, match="top=0.8.*mouth"):
        LowerFaceMask(top=0.8)


def test_unknown_shape_and_region_list_choices():
    with pytest.raises(ValueError, match="'circle'.*rectangle.*semicircle.*half_face"):
        LowerFaceMask(shape="circle")
    with pytest.raises(ValueError, match="'mouth'.*lips.*nose_to_chin.*below_eyes"):
        LowerFaceMask(region="mouth")
