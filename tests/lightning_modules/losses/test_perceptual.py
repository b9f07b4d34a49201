"""The perceptual distance: ST-LPIPS from the stlpips-pytorch wheel offline, `auto`'s choice,
the random backbone only by name, and the network kept out of checkpoints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.losses import LipSyncLoss
from lightning_modules.losses.perceptual import (
    BACKBONE_FILES,
    LPIPSLoss,
    LPIPSWeightsMissing,
    resolve_backbone,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A torch hub cache without torchvision's weights, and no network to fetch them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise OSError("tests are offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path / "torch"


@pytest.fixture(scope="module")
def stlpips() -> LPIPSLoss:
    return LPIPSLoss("alex", "stlpips")


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """A photograph (skimage's astronaut) at the generator's 96 px, (1, 3, 96, 96) in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(image, size=(96, 96), mode="bilinear", antialias=True,
                         align_corners=False)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * round(3 * sigma) + 1
    g = torch.exp(-(torch.arange(k) - k // 2).float() ** 2 / (2 * sigma**2))
    g = (g / g.sum()).to(x)
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)


def _noise(x: torch.Tensor, std: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_random_backbone_is_the_same_network_every_time():
    """Evaluations with the random backbone must be comparable across runs."""
    first = LPIPSLoss(backbone="random")
    torch.manual_seed(1234)  # whatever the global RNG state
    second = LPIPSLoss(backbone="random")
    own, other = first.lpips.state_dict(), second.lpips.state_dict()
    assert own.keys() == other.keys() and len(own) > 10
    for key in own:
        assert torch.equal(own[key], other[key]), key


def test_stlpips_builds_offline_and_is_named_stlpips(empty_torch_home):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    loss = LPIPSLoss("alex", "stlpips")
    assert torch.equal(torch.rand(3), expected)  # building it did not move the global RNG
    assert (loss.backbone, loss.metric_name) == ("stlpips", "stlpips")
    assert "ST-LPIPS" in loss.description
    assert not any(p.requires_grad for p in loss.parameters())
    assert not loss.lpips.training


def test_stlpips_is_zero_on_identical_images_positive_otherwise_and_deterministic(stlpips):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 96, 96, generator=g), torch.rand(4, 3, 96, 96, generator=g)
    assert stlpips(x, x).item() == 0.0
    distances = stlpips.distance(x, y)
    assert distances.shape == (4,) and bool((distances > 0.01).all())
    assert torch.equal(stlpips.distance(x, y), distances)
    assert torch.equal(LPIPSLoss("alex", "stlpips").distance(x, y), distances)  # a fresh build


def test_stlpips_gradient_reaches_the_images_not_the_network(stlpips):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 96, 96, generator=g)
    fake = torch.rand(2, 3, 96, 96, generator=g).requires_grad_(True)
    stlpips(fake, target).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in stlpips.parameters())


def test_stlpips_ranks_blur_and_noise_by_strength_on_a_photograph(stlpips, astronaut):
    with torch.no_grad():
        blurred = [stlpips(astronaut, _blur(astronaut, s)).item() for s in (0.5, 1, 2, 4)]
        noisy = [stlpips(astronaut, _noise(astronaut, s)).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert blurred == sorted(blurred) and len(set(blurred)) == 4, blurred
    assert noisy == sorted(noisy) and len(set(noisy)) == 4, noisy


def test_a_one_pixel_shift_is_near_nothing_to_stlpips_but_not_to_a_random_backbone(
        stlpips, astronaut):
    """A perceptual distance, not a pixel one: a 1 px shift is invisible, noise of the same
    MSE is not. ST-LPIPS scores the shift under a tenth of the noise (measured: ~1/50 on
    skimage's photographs); the random backbone scores them alike, so this fails for it."""
    shifted = torch.roll(astronaut, shifts=1, dims=3)
    noisy = _noise(astronaut, F.mse_loss(shifted, astronaut).sqrt().item())
    with torch.no_grad():
        assert stlpips(astronaut, shifted) < 0.1 * stlpips(astronaut, noisy)
        random = LPIPSLoss("alex", "random")
        assert random(astronaut, shifted) > 0.1 * random(astronaut, noisy)


def test_auto_picks_stlpips_without_torchvision_weights(empty_torch_home):
    assert resolve_backbone("alex", "auto") == "stlpips"
    loss = LPIPSLoss("alex", "auto")
    assert (loss.requested_backbone, loss.backbone, loss.metric_name) == \
        ("auto", "stlpips", "stlpips")
    assert LPIPSLoss().backbone == "stlpips"  # auto is the default: never random unasked


def test_auto_picks_torchvision_lpips_when_its_file_is_in_the_hub_cache(empty_torch_home):
    torchvision = pytest.importorskip("torchvision")
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        state = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(state, checkpoints / BACKBONE_FILES["alex"])
    loss = LPIPSLoss("alex", "auto")
    assert (loss.backbone, loss.metric_name) == ("pretrained", "lpips")
    assert "LPIPS v0.1" in loss.description and "ST-LPIPS" not in loss.description
    # the backbone is the file's (here a random draw saved under torchvision's name)
    torch.testing.assert_close(loss.lpips.net.slice1[0].weight, state["features.0.weight"])


def test_backbone_choices_are_validated(empty_torch_home):
    with pytest.raises(ValueError, match="lpips_backbone='imagenet'"):
        LPIPSLoss("alex", "imagenet")
    with pytest.raises(ValueError, match="ST-LPIPS ships"):
        LPIPSLoss("squeeze", "stlpips")
    with pytest.raises(LPIPSWeightsMissing, match="squeezenet1_1"):
        LPIPSLoss("squeeze", "auto")
    with pytest.raises(LPIPSWeightsMissing, match="lpips_backbone=stlpips"):
        LPIPSLoss("alex", "pretrained")  # the error offers the offline choice


def test_the_network_stays_out_of_checkpoints_and_survives_loading_old_ones(stlpips):
    """A checkpoint written with another backbone (or by a version that saved the network)
    loads strictly into a model with ST-LPIPS, which keeps its own weights."""
    old = LipSyncLoss(lpips_backbone="random", disc_channels=8)
    old_state = old.state_dict()
    old_state.update({f"perceptual.lpips.{k}": v
                      for k, v in old.perceptual.lpips.state_dict().items()})
    new = LipSyncLoss(lpips_backbone="stlpips", disc_channels=8)
    before = {k: v.clone() for k, v in new.perceptual.lpips.state_dict().items()}
    assert not any(k.startswith("perceptual.") for k in new.state_dict())
    new.load_state_dict(old_state, strict=True)
    for key, value in new.perceptual.lpips.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(new.discriminator.state_dict(), old.discriminator.state_dict())


def test_generator_loss_logs_the_distance_under_its_network_name(stlpips):
    g = torch.Generator().manual_seed(0)
    fake, real = torch.rand(2, 3, 48, 48, generator=g), torch.rand(2, 3, 48, 48, generator=g)
    st = LipSyncLoss(lpips_backbone="stlpips", disc_channels=8)
    _, logs = st.generator_loss(fake, real, step=0)
    assert "g_stlpips" in logs and "g_lpips" not in logs and logs["g_stlpips"] > 0
    _, logs = LipSyncLoss(lpips_backbone="random", disc_channels=8).generator_loss(
        fake, real, step=0)
    assert "g_lpips" in logs and "g_stlpips" not in logs


def test_undeclared_imports_are_stood_in_only_during_the_import(tmp_path):
    """stlpips-pytorch imports IPython and torchsummary without declaring them: building
    ST-LPIPS must work without either, and leave neither (nor a stand-in) in sys.modules."""
    code = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('IPython', 'torchsummary'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "try:\n"
        "    import stlpips_pytorch.stlpips\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('plain import:', exc)\n"
        "from lightning_modules.losses.stlpips_net import build_stlpips\n"
        "build_stlpips('alex')\n"
        "inv = sys.modules['stlpips_pytorch.invariant_networks']\n"
        "assert 'IPython' not in sys.modules and 'torchsummary' not in sys.modules\n"
        "try:\n"
        "    inv.embed()\n"
        "except RuntimeError as exc:\n"
        "    print('stand-in:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False,
                         env=dict(os.environ, TORCH_HOME=str(tmp_path), PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "plain import: IPython" in out.stdout  # the package alone cannot be imported
    assert "stand-in: stlpips-pytorch called IPython" in out.stdout
