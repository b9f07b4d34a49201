"""The frozen perceptual distance, with the network chosen explicitly and named honestly.

Backbones (`lpips_backbone`):

- `pretrained`: LPIPS (the `lpips` package) on torchvision's ImageNet backbone. `lpips.LPIPS`
  fetches that backbone from the network at construction and fails offline deep inside
  torchvision, so it must already be in the torch hub cache (a clear error says where).
- `stlpips`: ST-LPIPS, the shift-tolerant LPIPS whose complete pretrained networks ship inside
  the `stlpips-pytorch` wheel (lightning_modules.losses.stlpips_net): works offline.
- `auto`: `pretrained` when its weights are in the hub cache, else `stlpips`.
- `random`: LPIPS on a seeded random backbone, for tests and smoke runs only: not a perceptual
  distance, so it is never chosen for you.

ST-LPIPS and LPIPS are different metrics (other backbone, other scale), so every caller logs
and reports the distance under `LPIPSLoss.metric_name` ("stlpips" or "lpips"), never one as
the other.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_modules.losses.stlpips_net import STLPIPS_NETS, build_stlpips

BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
BACKBONES = ("auto", "pretrained", "stlpips", "random")
METRIC_NAMES = {"pretrained": "lpips", "random": "lpips", "stlpips": "stlpips"}


class LPIPSWeightsMissing(FileNotFoundError):
    pass


def backbone_path(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def resolve_backbone(net: str, backbone: str) -> str:
    """`auto` -> `pretrained` when torchvision's weights are in the hub cache, else `stlpips`;
    any other choice is returned as given (after validation)."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"lpips_net={net!r}: expected one of {sorted(BACKBONE_FILES)}")
    if backbone not in BACKBONES:
        raise ValueError(f"lpips_backbone={backbone!r}: expected one of {BACKBONES}")
    if backbone == "stlpips" and net not in STLPIPS_NETS:
        raise ValueError(f"lpips_backbone=stlpips, lpips_net={net!r}: ST-LPIPS ships "
                         f"{STLPIPS_NETS} networks only")
    if backbone != "auto":
        return backbone
    if backbone_path(net).is_file():
        return "pretrained"
    if net in STLPIPS_NETS:
        return "stlpips"
    raise LPIPSWeightsMissing(
        f"lpips_backbone=auto, lpips_net={net!r}: torchvision's weights are not at "
        f"{backbone_path(net)} and ST-LPIPS has no {net} network ({STLPIPS_NETS}); copy "
        f"{BACKBONE_FILES[net]} there or use lpips_net=alex")


def describe(net: str, backbone: str) -> str:
    """One line naming the network that measured the distance (for reports and logs)."""
    if backbone == "stlpips":
        return (f"ST-LPIPS (shift-tolerant LPIPS, {net}, pretrained weights shipped in "
                "stlpips-pytorch); not on the LPIPS scale")
    if backbone == "pretrained":
        return f"LPIPS v0.1 ({net}, torchvision ImageNet backbone)"
    return (f"LPIPS v0.1 ({net}) on a RANDOM backbone (seeded): only identical images score 0; "
            "not a perceptual distance")


class LPIPSLoss(nn.Module):
    """Frozen perceptual distance on images in [0, 1]; `forward` returns the batch mean.

    The network is a fixed function of (`net`, `backbone`), not learned state, so it is kept
    out of `state_dict`: checkpoints do not carry its 10-60 MB, and a checkpoint written with
    one backbone (e.g. `auto` resolved on another machine) loads into a model using another.
    """

    def __init__(self, net: str = "alex", backbone: str = "auto") -> None:
        super().__init__()
        resolved = resolve_backbone(net, backbone)
        if resolved == "pretrained":
            path = backbone_path(net)
            if not path.is_file():
                raise LPIPSWeightsMissing(
                    f"LPIPS needs the pretrained torchvision '{net}' backbone at {path} and it is "
                    f"not there (nothing is downloaded at run time). Copy {path.name} into "
                    f"{path.parent} (or point $TORCH_HOME at a folder whose hub/checkpoints holds "
                    "it), or set lpips_backbone=stlpips (pretrained ST-LPIPS, offline) or "
                    "auto; lpips_backbone=random is for tests and smoke runs only (a random "
                    "backbone is not a perceptual loss)."
                )
        if resolved == "stlpips":
            self.lpips = build_stlpips(net)
        else:
            self.lpips = _build_lpips(net, random=resolved == "random")
        self.net_name = net
        self.requested_backbone = backbone
        self.backbone = resolved
        self.metric_name = METRIC_NAMES[resolved]
        self.description = describe(net, resolved)
        self.lpips.eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)
        self.register_state_dict_post_hook(_drop_network)
        self.register_load_state_dict_pre_hook(_keep_network)

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.lpips.eval()  # dropout in the linear heads stays off
        return self

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image distance, (B,)."""
        return self.lpips(prediction, target, normalize=True).flatten()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.distance(prediction, target).mean()


def _build_lpips(net: str, random: bool) -> nn.Module:
    import lpips  # deferred: imports torchvision models

    # a random backbone is drawn from a fixed seed (without touching the global RNG), so
    # two runs or two evaluations measure with the same random network
    with contextlib.redirect_stdout(io.StringIO()), _quiet_torchvision(), \
            torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return lpips.LPIPS(net=net, pnet_rand=random, verbose=False)


def _drop_network(module: LPIPSLoss, state_dict: dict[str, Any], prefix: str,
                  local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "lpips.")]:
        del state_dict[key]


def _keep_network(module: LPIPSLoss, state_dict: dict[str, Any], prefix: str,
                  local_metadata: Any, strict: bool, missing_keys: list[str],
                  unexpected_keys: list[str], error_msgs: list[str]) -> None:
    """Whatever a checkpoint holds for the network (older checkpoints saved it, maybe for
    another backbone) is replaced by the network's own tensors, so loading keeps it as built."""
    for key in [k for k in state_dict if k.startswith(prefix + "lpips.")]:
        del state_dict[key]
    for key, value in module.lpips.state_dict().items():
        state_dict[prefix + "lpips." + key] = value


@contextlib.contextmanager
def _quiet_torchvision():
    """torchvision warns that `pretrained=` is deprecated each time lpips builds a backbone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        yield
