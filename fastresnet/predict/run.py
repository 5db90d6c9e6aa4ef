"""`predict`: the optimized model over a source's images, in batches, rows written as they come."""

from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..api import optimize
from . import images, output, sources
from .model import build_model


@dataclass
class PredictSummary:
    images: int  # found in the source
    written: int  # rows written: the images that could be read
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of each skipped image
    seconds: float = 0.0
    out: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def default_workers() -> int:
    """Decoding processes: the CPUs the model's threads leave free, at most 8; none where
    they take every CPU. A decoder beside them there costs more than it saves: on a 2-vCPU
    Zen 4 (ResNet-50, batch 8, 2 threads; BENCHMARKS.md) decoding in between batches in
    this process gave 39.1-42.7 ms per image, one or two worker processes 47.4-55.2, the
    model alone 38.6: its threads wait at each parallel region's barrier for the one the
    decoder displaced."""
    free = (os.cpu_count() or 1) - torch.get_num_threads()
    return max(0, min(8, free))


def read_labels(path: str | Path | None) -> list[str] | None:
    """The class names in ``path``, one per line, or None without one."""
    if path is None:
        return None
    names = [line.strip() for line in Path(path).read_text().splitlines()]
    return [n for n in names if n]


def predict(
    source: str | Path,
    model: str | nn.Module,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    batch_size: int = 8,
    top_k: int = 1,
    labels: str | Path | None = None,
    embed: bool = False,
    resize: int = images.RESIZE,
    crop: int = images.CROP,
    transforms: str | None = None,
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
    workers: int | None = None,
    progress=None,
) -> PredictSummary:
    """Classify (or, with ``embed``, embed) every image of ``source`` with ``model`` (a
    torchvision ResNet name, ``module:callable``, or a module) made fast by ``optimize``.
    Rows: path, class (top-1 index), score (its softmax probability), top-k classes and
    scores with ``top_k`` > 1, their names with ``labels``; or path and the pooled features
    with ``embed``. Preprocessing: ``resize`` and ``crop`` (images.preprocessing), or the one
    torchvision documents for the weights named by ``transforms``. Unreadable images are
    skipped and listed in the summary."""
    if batch_size < 1 or top_k < 1:
        raise ValueError(f"batch_size and top_k must be >= 1, got {batch_size} and {top_k}")
    out = Path(out)
    output.check_target(out)
    if transforms:
        images.weights_preprocessing(transforms)  # a bad name fails before any work
    paths = sources.image_paths(source)
    net = build_model(model, weights) if isinstance(model, str) else model  # optimize() refuses training mode
    names = read_labels(labels)
    if embed:
        net = without_classifier(net)
    fast = optimize(net, backend=backend, dtype=dtype)
    transform = images.weights_preprocessing(transforms) if transforms else images.preprocessing(resize, crop)
    loader = images.batches(paths, transform, batch_size, default_workers() if workers is None else workers)

    def outputs():
        with torch.inference_mode():
            for indices, batch, failed in loader:
                result = fast(batch.to(dtype)).float() if batch is not None else None
                yield [paths[i] for i in indices], result, [(str(paths[i]), why) for i, why in failed]

    return write_rows(outputs(), PredictSummary(images=len(paths), written=0, out=out), top_k, names, embed, progress)


def write_rows(outputs, summary: PredictSummary, top_k: int, names, embed: bool, progress=None) -> PredictSummary:
    """Write to ``summary.out`` the rows of ``outputs``, batches of (paths, the model's output
    for them or None, [(path, why it was skipped), ...]), counting them in ``summary``."""
    writer = output.RowWriter(summary.out)
    start, fieldnames = time.perf_counter(), ["path"]
    try:
        for kept, result, failed in outputs:
            summary.failed += failed
            if kept:
                rows = rows_of(kept, range(len(kept)), result, top_k, names, embed)
                fieldnames = list(rows[0])
                writer.write(rows)
                summary.written += len(rows)
            if progress is not None:
                progress(summary.written + len(summary.failed), summary.images, time.perf_counter() - start)
        writer.close(fieldnames)
    except BaseException:
        writer.abandon()
        raise
    summary.seconds = time.perf_counter() - start
    return summary


def rows_of(paths, indices, result: torch.Tensor, top_k: int, names, embed: bool) -> list[dict]:
    """The output rows of images ``indices`` of ``paths``, from the model's ``result`` for them."""
    return _embedding_rows(paths, indices, result) if embed else _class_rows(paths, indices, result, top_k, names)


def without_classifier(net: nn.Module) -> nn.Module:
    """The model with its final Linear (``fc``) replaced by the identity: its output is then
    the pooled features. A copy: the caller's model is not changed."""
    if not isinstance(getattr(net, "fc", None), nn.Linear):
        raise ValueError("--embed takes a model whose classifier is a Linear named fc (torchvision's ResNets)")
    net = copy.deepcopy(net)
    net.fc = nn.Identity().eval()
    return net


def _class_rows(paths, indices, logits: torch.Tensor, top_k: int, names) -> list[dict]:
    probabilities = logits.double().softmax(dim=1)
    k = min(top_k, probabilities.shape[1])
    scores, classes = probabilities.topk(k, dim=1)
    rows = []
    for row, i in enumerate(indices):
        entry = {"path": str(paths[i]), "class": int(classes[row, 0]), "score": float(scores[row, 0])}
        if names is not None:
            entry["label"] = _name(names, int(classes[row, 0]))
        if top_k > 1:
            for j in range(k):
                entry[f"top{j + 1}_class"] = int(classes[row, j])
                entry[f"top{j + 1}_score"] = float(scores[row, j])
                if names is not None:
                    entry[f"top{j + 1}_label"] = _name(names, int(classes[row, j]))
        rows.append(entry)
    return rows


def _name(names: list[str], index: int) -> str:
    return names[index] if index < len(names) else ""


def _embedding_rows(paths, indices, features: torch.Tensor) -> list[dict]:
    flat = features.flatten(1)
    return [
        {"path": str(paths[i]), **{f"f{j}": float(v) for j, v in enumerate(flat[row].tolist())}}
        for row, i in enumerate(indices)
    ]


def print_progress(done: int, total: int, seconds: float, stream=sys.stderr) -> None:
    rate = done / seconds if seconds else 0.0
    filled = int(30 * done / max(total, 1))
    stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} images, {rate:.1f} images/s")
    if done == total:
        stream.write("\n")
    stream.flush()
