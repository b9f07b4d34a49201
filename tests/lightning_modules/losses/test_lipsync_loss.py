import pytest
import torch

from lightning_modules.losses import LipSyncLoss, LPIPSLoss, LPIPSWeightsMissing


def make_loss(**kw) -> LipSyncLoss:
    kw.setdefault("lpips_backbone", "random")
    kw.setdefault("disc_channels", 8)
    return LipSyncLoss(**kw)


def test_l1_must_be_weighted_highest_unless_explicitly_allowed():
    with pytest.raises(ValueError, match="l1_weight=1.0 must exceed"):
        make_loss(l1_weight=1.0, lpips_weight=2.0)
    make_loss(l1_weight=1.0, lpips_weight=2.0, require_l1_highest=False)


@pytest.mark.parametrize("bad", [{"l1_weight": -1.0}, {"gan_mode": "wgan"}, {"adv_start_step": -1}])
def test_out_of_range_settings_name_the_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        make_loss(require_l1_highest=False, **bad)


def test_pretrained_lpips_without_local_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(LPIPSWeightsMissing, match="alexnet-owt-7be5be79.pth.*lpips_backbone=random"):
        LPIPSLoss("alex", "pretrained")


def test_lpips_is_zero_on_identical_images_and_frozen():
    lp = LPIPSLoss("alex", "random")
    x = torch.rand(2, 3, 48, 48)
    assert lp(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert lp(x, torch.rand(2, 3, 48, 48)).item() > 0
    assert not any(p.requires_grad for p in lp.parameters())


def test_generator_loss_is_the_weighted_sum_and_adv_waits_for_its_start():
    torch.manual_seed(0)
    loss = make_loss(l1_weight=10.0, adv_weight=0.5, lpips_weight=2.0, adv_start_step=100)
    fake, real = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    early, logs = loss.generator_loss(fake, real, step=0)
    torch.testing.assert_close(early, 10.0 * logs["g_l1"] + 2.0 * logs["g_lpips"])
    late, logs = loss.generator_loss(fake, real, step=100)
    torch.testing.assert_close(late, 10.0 * logs["g_l1"] + 0.5 * logs["g_adv"] + 2.0 * logs["g_lpips"])


def test_discriminator_takes_part_in_generator_backward_even_before_adv_start():
    """No parameter may be unused in a backward pass: DDP runs without find_unused_parameters."""
    loss = make_loss(adv_start_step=10**9)
    fake = torch.rand(2, 3, 48, 48, requires_grad=True)
    total, _ = loss.generator_loss(fake, torch.rand(2, 3, 48, 48), step=0)
    total.backward()
    assert all(p.grad is not None for p in loss.discriminator.parameters())


@pytest.mark.parametrize("mode", ["hinge", "lsgan"])
def test_discriminator_loss_rewards_separating_real_from_fake(mode):
    loss = make_loss(gan_mode=mode)
    real, fake = torch.rand(4, 3, 48, 48), torch.rand(4, 3, 48, 48)
    opt = torch.optim.Adam(loss.discriminator.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        d, logs = loss.discriminator_loss(fake, real)
        first = d.item() if first is None else first
        opt.zero_grad()
        d.backward()
        opt.step()
    assert d.item() < first
    assert logs["d_real_logit"] > logs["d_fake_logit"]


def test_mask_emphasis_weights_the_generated_region_and_stays_a_mean_error():
    loss = make_loss(mask_l1_emphasis=9.0)
    real = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:, :] = 1.0                       # bottom half generated
    top_err, bottom_err = real.clone(), real.clone()
    top_err[..., :2, :] = 1.0
    bottom_err[..., 2:, :] = 1.0
    # same plain L1 (0.5) either way, but errors in the generated region weigh 10x more
    assert loss.l1(bottom_err, real, mask) == pytest.approx(10 / 11)
    assert loss.l1(top_err, real, mask) == pytest.approx(1 / 11)
    assert loss.l1(torch.ones_like(real), real, mask) == pytest.approx(1.0)
    assert make_loss(mask_l1_emphasis=0.0).l1(bottom_err, real, mask) == pytest.approx(0.5)
