"""ST-LPIPS (shift-tolerant LPIPS) networks loaded offline from the `stlpips-pytorch` wheel.

stlpips-pytorch ships complete pretrained networks (anti-aliased backbone + linear heads,
Ghildyal & Liu, ECCV 2022) inside its wheel, so unlike LPIPS on torchvision weights nothing
has to be downloaded. Two things in the package are handled here rather than trusted:

- Its modules import IPython (`embed`) and torchsummary (`summary`) at import time without
  declaring either, and never call them on the path used here. Declaring them would pull
  IPython (large, with its own dependency tree) into every training environment for an unused
  name, and a missing IPython must never stop training; so, only while the package is being
  imported and only for a module that is not installed, a stand-in sits in `sys.modules`
  (restored afterwards). The stand-ins raise if anything ever calls them.
- Its own loader calls `torch.load` without `weights_only` (pickle may run code) and loads with
  `strict=False` (a missing tensor would silently stay random). Here the weights are read with
  `weights_only=True` and every tensor of the network must come from the file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import threading
import types
from pathlib import Path

import torch
from torch import nn

STLPIPS_NETS = ("alex", "vgg")
VARIANT = "shift_tolerant"
# undeclared imports of stlpips-pytorch 0.0.2 -> the names it binds from them
UNDECLARED_IMPORTS = {"IPython": ("embed",), "torchsummary": ("summary",)}
_IMPORT_LOCK = threading.Lock()


class STLPIPSUnavailable(ImportError):
    pass


def _stand_in(module_name: str, names: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__doc__ = "lipmem's import-time stand-in for an undeclared stlpips-pytorch import"

    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"stlpips-pytorch called {module_name}, which is not installed "
                           "(lipmem only stood in for its unused import)")

    for name in names:
        setattr(module, name, unavailable)
    return module


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def import_stlpips() -> types.ModuleType:
    """The package's `stlpips_pytorch.stlpips` module, imported without IPython/torchsummary."""
    with _IMPORT_LOCK:
        if "stlpips_pytorch.stlpips" in sys.modules:
            return sys.modules["stlpips_pytorch.stlpips"]
        if importlib.util.find_spec("stlpips_pytorch") is None:
            raise STLPIPSUnavailable(
                "lpips_backbone=stlpips needs the `stlpips-pytorch` package (a lipmem "
                "dependency): pip install 'stlpips-pytorch==0.0.2'")
        missing = {name: names for name, names in UNDECLARED_IMPORTS.items()
                   if name not in sys.modules and not _installed(name)}
        for name, names in missing.items():
            sys.modules[name] = _stand_in(name, names)
        try:
            import stlpips_pytorch.stlpips as module
        finally:
            for name in missing:
                sys.modules.pop(name, None)
        return module


def weights_path(net: str) -> Path:
    """The pretrained ST-LPIPS weights file inside the installed package."""
    if net not in STLPIPS_NETS:
        raise ValueError(f"lpips_net={net!r}: ST-LPIPS ships {STLPIPS_NETS} networks only")
    package = Path(import_stlpips().__file__).parent
    return package / "weights" / "vST0.0" / f"{net}_{VARIANT}.pth"


def _with_aliases(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """The package registers its linear heads twice (`lin{i}` and `lins.{i}`, one module);
    its files hold only the `lin{i}` names."""
    out = dict(state)
    for key in own:
        if key.startswith("lins.") and key not in out:
            index, rest = key[len("lins."):].split(".", 1)
            alias = f"lin{index}.{rest}"
            if alias in state:
                out[key] = state[alias]
    return out


def build_stlpips(net: str = "alex") -> nn.Module:
    """The pretrained ST-LPIPS network (eval mode, not yet frozen); call it as
    ``model(a, b, normalize=True)`` on images in [0, 1] -> distances (B, 1, 1, 1)."""
    path = weights_path(net)
    module = import_stlpips()
    if not path.is_file():
        raise FileNotFoundError(f"ST-LPIPS weights {path} are missing from the installed "
                                "stlpips-pytorch package (reinstall stlpips-pytorch==0.0.2)")
    # the random initialisation is overwritten below; keep it off the caller's RNG stream
    with contextlib.redirect_stdout(io.StringIO()), torch.random.fork_rng(devices=[]):
        model = module.LPIPS(pretrained=False, net=net, variant=VARIANT, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"ST-LPIPS weights {path}: expected a state dict, got {type(state)}")
    try:
        model.load_state_dict(_with_aliases(state, model.state_dict()), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"ST-LPIPS weights {path} do not fit the package's {net} "
                         f"network: {exc}") from exc
    return model.eval()
