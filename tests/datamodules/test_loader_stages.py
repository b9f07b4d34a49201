"""The endless training stream gives up on shards that stop yielding clips, never hangs."""

import pytest

from datamodules.loader_stages import MAX_EMPTY_PASSES, ShardSource, StreamState


def test_stream_stops_when_shards_stop_yielding_clips_mid_run():
    state = StreamState("train")
    source = iter(ShardSource(["a.tar", "b.tar"], state, train=True))
    for _ in range(6):  # three good passes: every shard decodes into a clip
        next(source)
        state.ok_clips += 1
    with pytest.raises(RuntimeError, match="refusing to loop forever") as err:
        for _ in range(2 * (MAX_EMPTY_PASSES + 1)):  # then the files vanish: nothing decodes
            next(source)
    assert "6 usable before" in str(err.value)


def test_stream_that_never_yields_a_clip_stops_too():
    state = StreamState("train")
    source = iter(ShardSource(["a.tar"], state, train=True))
    with pytest.raises(RuntimeError, match="no usable clip"):
        for _ in range(MAX_EMPTY_PASSES + 2):
            next(source)
