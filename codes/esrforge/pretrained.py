"""ImageNet backbones from torchvision for losses and metrics: local files or torchvision's cache, never silent.

No weights ship with esrforge. A backbone loads from the file a config names, else from torchvision's
download cache (downloading there when online); offline without either, a one-line error says which
file to fetch and where to put it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .logs import first_line

# torchvision is imported where a backbone is built: its import takes seconds (it loads torch._dynamo), and
# inference or a run without perceptual losses needs none.


UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError)
"""What torch.load raises for a file that is not (or no longer) a whole checkpoint."""


def imagenet_state_dict(arch: str, weights_path: Path | None, who: str) -> dict[str, Any]:
    """The ImageNet state dict of torchvision's ``arch`` (e.g. vgg19) from ``weights_path`` or the cache.

    ``who`` names the component in errors (``perceptual loss``, ``metric lpips_alex``).
    """
    if weights_path is not None:
        if not weights_path.is_file():
            raise FileNotFoundError(f"{who}: weights_path {weights_path} does not exist")
        try:
            state: dict[str, Any] = torch.load(weights_path, map_location="cpu", weights_only=True)
        except UNREADABLE as err:
            raise ValueError(
                f"{who}: weights_path {weights_path} is not a readable PyTorch file ({first_line(err)})"
            ) from None
        return state
    import torchvision

    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    try:
        return dict(weights.get_state_dict(progress=True))
    except OSError as err:  # URLError and socket errors when offline
        raise FileNotFoundError(
            f"{who}: cannot download the {arch} weights ({err}); download {weights.url} "
            f"and save it as {target}, or set weights_path to a local copy"
        ) from None
    except UNREADABLE as err:
        raise ValueError(
            f"{who}: the cached {arch} weights {target} are unreadable ({first_line(err)}), an interrupted "
            f"download? Delete the file and run again online, or save {weights.url} there"
        ) from None


def imagenet_features(
    arch: str, pretrained: bool, weights_path: Path | None, who: str, last: int | None = None
) -> nn.Sequential:
    """``torchvision.models.<arch>().features[: last + 1]`` (all with None), built without the classifier.

    ``pretrained=False`` gives random weights (tests). ReLUs are made out-of-place, so a feature taken
    before one is not overwritten.
    """
    import torchvision

    with torch.device("meta"):
        layers = torchvision.models.get_model(arch, weights=None).features
    if last is not None:
        layers = layers[: last + 1]
    if pretrained:
        prefix = "features."
        state = {k.removeprefix(prefix): v for k, v in imagenet_state_dict(arch, weights_path, who).items()}
        wanted = set(layers.state_dict())
        try:
            layers.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True, assign=True)
        except RuntimeError as err:
            source = weights_path or "torchvision's cache"
            detail = first_line(err, skip=1)  # after "Error(s) in loading state_dict for Sequential:"
            raise ValueError(
                f"{who}: {source} does not hold torchvision's {arch} weights ({detail})"
            ) from None
    else:
        layers.to_empty(device="cpu")
        for module in layers.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
    for module in layers.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return layers
