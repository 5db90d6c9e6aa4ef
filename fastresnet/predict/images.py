"""Decoding and preprocessing, in DataLoader worker processes where the model's threads leave
CPUs free (run.default_workers), else in between batches. An image that cannot be read is
kept as its path and the reason, not raised: the run goes on without it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

# torchvision's ImageNet evaluation preprocessing, as its ResNet weights document it.
RESIZE, CROP = 256, 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocessing(resize: int = RESIZE, crop: int = CROP) -> transforms.Compose:
    """Short side to ``resize`` (bilinear, antialiased), center crop ``crop``, ImageNet mean and std."""
    return transforms.Compose(
        [
            transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def weights_preprocessing(name: str):
    """The preprocessing torchvision documents for its weights ``name`` (e.g.
    "ResNet50_Weights.IMAGENET1K_V2": resize 232, crop 224), built without downloading them."""
    import torchvision

    try:
        return torchvision.models.get_weight(name).transforms()
    except (KeyError, ValueError, AttributeError):
        raise ValueError(f"--transforms {name!r}: not a torchvision weights name such as 'ResNet50_Weights.IMAGENET1K_V2'") from None


def read_rgb(path: Path):
    """The image at ``path`` as an RGB PIL image, decoded in full (a truncated file raises
    here, not later); grey, palette and RGBA images are converted."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


class ImageFiles(Dataset):
    """Item i: (i, the preprocessed tensor or None, None or why the image could not be read)."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return index, *decode(self.paths[index], self.transform)


def decode(path: Path, transform) -> tuple[torch.Tensor | None, str | None]:
    """(the preprocessed image, None), or (None, why it could not be read)."""
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        return transform(read_rgb(path)), None
    except Exception as error:  # PIL raises many kinds; each is a reason to skip the image
        return None, f"{type(error).__name__}: {error}"


def _collate(items):
    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, why) for i, _, why in items if why is not None]
    batch = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], batch, failed


def batches(paths: list[Path], transform, batch_size: int, workers: int) -> DataLoader:
    """Batches of (indices, tensor (N, 3, H, W) or None, [(index, reason), ...]), in order."""
    return DataLoader(
        ImageFiles(paths, transform), batch_size=batch_size, num_workers=workers, collate_fn=_collate,
        prefetch_factor=2 if workers else None, persistent_workers=False,
    )  # fmt: skip
