"""LPIPS from the `lpips` package, with the backbone choice made explicit.

`lpips.LPIPS` fetches its torchvision backbone from the network at construction; offline
that fails deep inside torchvision. Here a pretrained backbone must already be in the torch
hub cache (a clear error says where to put it otherwise), and the random backbone, useful
only for tests and smoke runs, has to be asked for by name. Never a silent fallback.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
BACKBONES = ("pretrained", "random")


class LPIPSWeightsMissing(FileNotFoundError):
    pass


def backbone_path(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


class LPIPSLoss(nn.Module):
    """Frozen LPIPS distance on images in [0, 1]; returns the batch mean."""

    def __init__(self, net: str = "alex", backbone: str = "pretrained") -> None:
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ValueError(f"lpips_net={net!r}: expected one of {sorted(BACKBONE_FILES)}")
        if backbone not in BACKBONES:
            raise ValueError(f"lpips_backbone={backbone!r}: expected one of {BACKBONES}")
        if backbone == "pretrained":
            path = backbone_path(net)
            if not path.is_file():
                raise LPIPSWeightsMissing(
                    f"LPIPS needs the pretrained torchvision '{net}' backbone at {path} and it is "
                    f"not there (nothing is downloaded at run time). Copy {path.name} into "
                    f"{path.parent} (or point $TORCH_HOME at a folder whose hub/checkpoints holds "
                    "it), or set model.loss.lpips_backbone=random for tests and smoke runs only "
                    "(a random backbone is not a perceptual loss)."
                )
        import lpips  # deferred: imports torchvision models

        # a random backbone is drawn from a fixed seed (without touching the global RNG), so
        # two runs or two evaluations measure with the same random network
        with contextlib.redirect_stdout(io.StringIO()), _quiet_torchvision(), \
                torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.lpips = lpips.LPIPS(net=net, pnet_rand=backbone == "random", verbose=False)
        self.net_name = net
        self.backbone = backbone
        self.lpips.eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.lpips.eval()  # dropout in the linear heads stays off
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lpips(prediction, target, normalize=True).mean()


@contextlib.contextmanager
def _quiet_torchvision():
    """torchvision warns that `pretrained=` is deprecated each time lpips builds a backbone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        yield
