"""The model `predict` runs: a torchvision ResNet by name, or the user's own builder
(``module:callable``), with weights from a local file. Nothing is ever downloaded."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torchvision
from torch import nn

# torchvision's ResNet family, the names `--model` takes besides module:callable.
RESNET_NAMES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``: a plain state_dict, or a checkpoint holding one under
    "state_dict" or "model" (a DataParallel "module." prefix removed). Loaded with
    weights_only=True, so a file cannot run code."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"weights file {str(path)!r} does not exist") from None
    except Exception as error:  # unpickling raises many kinds
        raise ValueError(f"weights file {str(path)!r} could not be read as tensors: {type(error).__name__}: {error}") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"weights file {str(path)!r} holds no state_dict (a dict of tensors)")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded


def build_model(name: str, weights: str | Path | None = None) -> nn.Module:
    """Model ``name`` in eval mode, with ``weights`` loaded if given. A torchvision ResNet takes
    its number of classes from the weights' fc layer. ValueError, naming the first key that
    does not fit, where the weights do not fit the model."""
    state = load_state_dict(weights) if weights is not None else None
    if name in RESNET_NAMES:
        classes = state["fc.weight"].shape[0] if state is not None and "fc.weight" in state else 1000
        model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    elif ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            builder = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"--model {name!r}: cannot import {attribute!r} from {module_name!r}: {error}") from None
        model = builder()
        if not isinstance(model, nn.Module):
            raise ValueError(f"--model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    else:
        raise ValueError(f"unknown model {name!r}; valid models are {', '.join(RESNET_NAMES)}, or module:callable")
    if state is not None:
        _check_fits(model, state, weights)
        model.load_state_dict(state)
    return model.eval()


def _check_fits(model: nn.Module, state: dict[str, torch.Tensor], path) -> None:
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ValueError(f"weights file {str(path)!r} does not fit the model: it has no {key!r}")
        if state[key].shape != value.shape:
            raise ValueError(
                f"weights file {str(path)!r} does not fit the model: {key!r} is {tuple(state[key].shape)} "
                f"in the file, {tuple(value.shape)} in the model"
            )
    extra = [key for key in state if key not in expected]
    if extra:
        raise ValueError(f"weights file {str(path)!r} does not fit the model: the model has no {extra[0]!r}")
