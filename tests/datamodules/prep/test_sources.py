"""Listing videos, speaker ids from the layout, deterministic speaker splits."""

from collections import Counter

import pytest

from datamodules.prep.sources import assign_splits, list_videos, safe_name, speaker_of


def _touch(root, *paths):
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"x")


def test_speaker_layouts():
    assert speaker_of("spk1/a.mp4", "parent") == "spk1"
    assert speaker_of("id001/yt9/00001.mp4", "grandparent") == "id001"
    assert speaker_of("id001/yt9/00001.mp4", "top") == "id001"
    assert speaker_of("WDA_BarackObama_000.mp4", "prefix") == "WDA"
    assert speaker_of("x/WDA_Obama_000.mp4", r"regex:_(?P<speaker>[A-Za-z]+)_") == "Obama"
    with pytest.raises(ValueError, match="a.mp4: --speaker-from parent needs"):
        speaker_of("a.mp4", "parent")


def test_list_videos_names_and_collisions(tmp_path):
    _touch(tmp_path, "Ann.Lee/clip 1.mp4", "Ann.Lee/clip 1.mkv", "bob/x.MOV", "bob/notes.txt",
           "bob/.hidden.mp4", ".cache/y.mp4")
    tasks = list_videos(tmp_path)
    names = [(t.speaker, t.name) for t in tasks]
    assert names[2] == ("bob", "x") and len(tasks) == 3
    assert {n[0] for n in names[:2]} == {"Ann-Lee"} and names[0][1] != names[1][1]
    assert all(n[1].startswith("clip-1-") for n in names[:2])  # + a short path hash
    assert all("." not in t.stem for t in tasks)
    voxceleb = tmp_path / "vox"
    _touch(voxceleb, "id1/ytA/00001.mp4", "id1/ytB/00001.mp4")
    assert [t.name for t in list_videos(voxceleb, "grandparent")] == ["ytA-00001", "ytB-00001"]
    flat = list_videos(voxceleb, r"regex:(?P<speaker>id\d)")
    assert len({t.stem for t in flat}) == 2 and all(t.speaker == "id1" for t in flat)
    with pytest.raises(ValueError, match="is not a folder"):
        list_videos(tmp_path / "nope")
    assert safe_name("a_b.c d") == "a-b-c-d"


def test_splits_are_deterministic_by_speaker_and_stable():
    speakers = [f"s{i:02d}" for i in range(20)]
    a = assign_splits(speakers, (0.8, 0.1, 0.1), seed=0)
    assert a == assign_splits(list(reversed(speakers)), (0.8, 0.1, 0.1), seed=0)
    assert Counter(a.values()) == {"train": 16, "val": 2, "test": 2}
    assert assign_splits(speakers, (0.8, 0.1, 0.1), seed=1) != a
    b = assign_splits(speakers + ["s99"], (0.8, 0.1, 0.1), seed=0)
    moved = [s for s in speakers if a[s] != b[s]]
    assert len(moved) <= 2  # only speakers at a split boundary may move


def test_small_folders_still_train_and_validate():
    assert Counter(assign_splits(["a"], (0.8, 0.1, 0.1)).values()) == {"train": 1}
    assert Counter(assign_splits(["a", "b"], (0.8, 0.1, 0.1)).values()) == {"train": 1, "val": 1}
    assert Counter(assign_splits(["a", "b", "c"], (0.8, 0.1, 0.1)).values()) == \
        {"train": 1, "val": 1, "test": 1}
    assert Counter(assign_splits(["a", "b", "c"], (1.0, 0.0, 0.0)).values()) == {"train": 3}
