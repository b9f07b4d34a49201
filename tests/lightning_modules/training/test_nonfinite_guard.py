"""Non-finite losses: the step is skipped and counted; K in a row stop the run with a
checkpoint of the last good weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_modules.checkpoints.digest import load_checkpoint_safely, verify_digest
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from lightning_modules.training.nonfinite_guard import NonFiniteGuard, NonFiniteLossError

S, B = 32, 2


def tiny_model(k: int) -> LipSyncGAN:
    gen = LipSyncGenerator(image_size=S, num_codes=4, embed_dim=16, audio_dim=16,
                           base_channels=8, max_channels=16, attention_heads=2,
                           mapping_hidden=16, cond_channels=4)
    gen.memory.load_codes(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)))
    return LipSyncGAN(gen, LipSyncLoss(lpips_backbone="random", disc_channels=8),
                      max_nonfinite_steps=k)


def batch(bad: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(B, 1, 1, 80, 16, generator=g)
    if bad:
        mel[0, 0, 0, 3, 4] = float("nan")  # one NaN input poisons the output and both losses
    mask = torch.zeros(B, 1, S, S)
    mask[:, :, S // 2:] = 1.0
    return {"face": torch.randint(0, 256, (B, 1, 3, S, S), generator=g, dtype=torch.uint8),
            "mel": mel, "mask": mask}


class Snapshots(L.Callback):
    """Weights and optimizer state before and after every batch."""

    def __init__(self) -> None:
        self.before: list[dict] = []
        self.after: list[dict] = []

    @staticmethod
    def _state(module: LipSyncGAN) -> dict:
        opts = module.optimizers()
        return {"w": {k: v.detach().clone() for k, v in module.state_dict().items()},
                "opt": [len(o.optimizer.state) if hasattr(o, "optimizer") else len(o.state)
                        for o in opts]}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before.append(self._state(module))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after.append(self._state(module))


def fit(model: LipSyncGAN, pattern: list[bool], tmp_path,
        snaps: Snapshots | None = None) -> tuple[L.Trainer, Snapshots]:
    snaps = snaps if snaps is not None else Snapshots()
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        limit_val_batches=0, callbacks=[snaps])
    loader = DataLoader([batch(bad, i) for i, bad in enumerate(pattern)], batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    return trainer, snaps


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.timeout(300)
def test_a_nonfinite_batch_is_skipped_counted_and_changes_nothing(tmp_path):
    model = tiny_model(k=3)
    trainer, snaps = fit(model, [False, True, False, True, False], tmp_path)
    assert model.nonfinite.skipped_steps == 4  # D and G step of each of the 2 bad batches
    assert model.nonfinite.bad_batches == 2 and model.nonfinite.consecutive == 0
    assert trainer.global_step == 2 * 3  # only good batches step the optimizers
    assert float(trainer.callback_metrics["train/nonfinite_steps"]) == 4
    for i in (1, 3):  # the bad batches left weights and Adam state exactly as they were
        assert same(snaps.before[i]["w"], snaps.after[i]["w"])
        assert snaps.before[i]["opt"] == snaps.after[i]["opt"]
    assert not same(snaps.before[2]["w"], snaps.after[2]["w"])  # good batches do train
    assert all(torch.isfinite(v).all() for v in model.state_dict().values()
               if v.is_floating_point())


@pytest.mark.timeout(300)
def test_k_consecutive_nonfinite_batches_stop_with_a_checkpoint_of_the_last_good_state(tmp_path):
    model = tiny_model(k=3)
    snaps = Snapshots()
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive .*nonfinite-stop\.ckpt"):
        fit(model, [False, False, True, True, True, False], tmp_path, snaps)
    assert len(snaps.before) == 5  # stopped in the 5th batch, the 3rd bad one in a row
    ckpt = tmp_path / "checkpoints" / "nonfinite-stop.ckpt"
    assert verify_digest(ckpt)
    saved = load_checkpoint_safely(ckpt)["state_dict"]
    last_good = snaps.after[1]["w"]  # after the 2nd batch, the last finite one
    assert saved.keys() == last_good.keys()
    assert same(last_good, saved)


def test_guard_counts_consecutive_bad_batches_and_resets_on_a_good_one():
    guard = NonFiniteGuard(2)
    assert not guard.record(2) and not guard.record(0) and not guard.record(1)
    assert guard.record(2) and guard.skipped_steps == 5 and guard.bad_batches == 3
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        NonFiniteGuard(0)
    bad, extra = NonFiniteGuard.agree(torch.tensor(float("inf")), lambda t: t,
                                      torch.tensor([2, 3]))
    assert bad and extra.tolist() == [2.0, 3.0]


class RankBatches(torch.utils.data.IterableDataset):
    """Rank 1 sees a non-finite batch where rank 0 sees a good one."""

    def __init__(self, bad: dict[int, list[int]], n: int = 3) -> None:
        self.bad, self.n = bad, n

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        for i in range(self.n):
            yield batch(i in self.bad.get(rank, []), 10 * rank + i)


class Report(L.Callback):
    def __init__(self, folder) -> None:
        self.folder = str(folder)

    def on_train_end(self, trainer, module) -> None:
        import json
        from pathlib import Path

        digest = float(sum(p.detach().double().sum() for p in module.parameters()))
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "skipped": module.nonfinite.skipped_steps, "global_step": trainer.global_step,
            "digest": digest}))


@pytest.mark.timeout(600)
def test_ddp_ranks_agree_to_skip_when_only_one_rank_sees_a_nonfinite_loss(tmp_path):
    import json

    model = tiny_model(k=3)
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=2,
                        strategy="ddp_spawn", max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, limit_val_batches=0,
                        callbacks=[Report(tmp_path)], use_distributed_sampler=False)
    trainer.fit(model, train_dataloaders=DataLoader(RankBatches({1: [1]}), batch_size=None))
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["skipped"] for r in reports] == [2, 2]  # rank 0 skipped too: no DDP hang
    assert [r["global_step"] for r in reports] == [4, 4]
    assert reports[0]["digest"] == pytest.approx(reports[1]["digest"], rel=0, abs=0)
