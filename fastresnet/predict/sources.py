"""The image files a SOURCE names: a folder (searched recursively), a glob pattern, a text file
of paths (one per line, relative to the text file's folder), or one image file."""

from __future__ import annotations

import glob
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_paths(source: str | Path) -> list[Path]:
    """The images of ``source``, in a stable order (sorted, or the list file's own order).
    ValueError when it names nothing, or no image."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p))
        where = f"folder {text!r} (searched recursively for {', '.join(IMAGE_SUFFIXES)})"
    elif path.is_file() and is_image_path(path):
        found, where = [path], f"file {text!r}"
    elif path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines()]
        found = [(path.parent / line) for line in lines if line and not line.startswith("#")]
        where = f"list file {text!r}"
    elif glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"pattern {text!r}"
    else:
        raise ValueError(f"source {text!r} is not a folder, an image, a list file or a glob pattern that exists")
    if not found:
        raise ValueError(f"no images in {where}")
    return found
