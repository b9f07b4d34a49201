from types import SimpleNamespace

import pytest
import torch

from lightning_modules.callbacks.val_media_logger import ValMediaLogger


def _trainer(tmp_path, step, sanity=False):
    return SimpleNamespace(sanity_checking=sanity, is_global_zero=True, loggers=[],
                           default_root_dir=str(tmp_path), current_epoch=step, global_step=step)


def _outputs():
    image = torch.rand(3, 3, 16, 16)
    return {"masked": image, "generated": image.flip(0), "truth": image.roll(1, 0)}


def _val_run(callback, trainer):
    callback.on_validation_epoch_start(trainer, None)
    for batch_idx in range(2):
        callback.on_validation_batch_end(trainer, None, _outputs(), None, batch_idx)
    callback.on_validation_epoch_end(trainer, None)


def test_grid_on_the_first_and_every_kth_run_and_never_in_the_sanity_check(tmp_path):
    callback = ValMediaLogger(every_n_val=2, num_images=2, video_seconds=0)
    _val_run(callback, _trainer(tmp_path, 99, sanity=True))
    for step in range(5):
        _val_run(callback, _trainer(tmp_path, step))
    written = sorted(p.name for p in (tmp_path / "samples").glob("val_epoch*.png"))
    assert written == [f"val_epoch{s:03d}_step{s:07d}.png" for s in (0, 2, 4)]
    assert (tmp_path / "samples" / "val_latest.png").is_file()


def test_every_n_val_zero_writes_nothing(tmp_path):
    callback = ValMediaLogger(every_n_val=0)
    _val_run(callback, _trainer(tmp_path, 0))
    assert not (tmp_path / "samples").exists()


@pytest.mark.parametrize("kwargs", [{"every_n_val": -1}, {"every_n_val": True},
                                    {"num_images": 0}, {"video_seconds": -1.0}])
def test_bad_settings_are_refused_with_their_key(kwargs):
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"media.{key}"):
        ValMediaLogger(**kwargs)
