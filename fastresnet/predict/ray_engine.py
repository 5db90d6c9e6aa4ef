"""`fastresnet predict --engine ray`: the same rows, with the model run by a pool of Ray actors.

Ray Data holds the image paths; each actor builds and optimizes the model once, then decodes
and runs the batches it is given (so a cluster decodes where it computes, and no CPU is
needed for separate read tasks: on a 2-CPU machine an actor pool that took every CPU left
none for Ray Data's read tasks, and the pipeline stalled). The driver turns the logits (or
features) into rows exactly as the single-process path does (run.py), and writes them.
For pipelines that go on in Ray, ``predict_dataset`` gives the rows as a Ray Dataset instead,
made by the actors themselves, to write with Ray Data's own writers (``write_parquet``, ...).

A local cluster by default; an existing one with ``address`` or RAY_ADDRESS. By default one
actor per node, asking for the CPUs of the smallest node, its torch threads set to them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..api import optimize
from . import images, output, run, sources
from .model import build_model


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray (pip install 'fastresnet[ray]')") from None
    return ray


class Predictor:
    """A Ray Data actor: the optimized model, built once; a batch of paths in, for each path
    the model's output (or zeros) and why the image could not be read (or "")."""

    def __init__(self, model: str, weights, embed: bool, dtype: torch.dtype, backend: str, threads: int, resize, crop,
                 transforms=None):  # fmt: skip
        torch.set_num_threads(threads)
        net = build_model(model, weights)
        self.fast = optimize(run.without_classifier(net) if embed else net, backend=backend, dtype=dtype)
        self.dtype = dtype
        self.transform = images.weights_preprocessing(transforms) if transforms else images.preprocessing(resize, crop)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decoded = [images.decode(Path(p), self.transform) for p in batch["path"]]
        good = [i for i, (x, _) in enumerate(decoded) if x is not None]
        # One vector per image, empty where it could not be read: an object column, so that
        # batches with nothing readable concatenate with the others whatever Ray re-batches.
        results = np.empty(len(decoded), dtype=object)
        results[:] = [np.zeros(0, np.float32)] * len(decoded)
        if good:
            with torch.inference_mode():
                out = self.fast(torch.stack([decoded[i][0] for i in good]).to(self.dtype)).float().flatten(1).numpy()
            for row, i in enumerate(good):
                results[i] = out[row]
        errors = np.array([why or "" for _, why in decoded], dtype=object)
        return {"path": batch["path"], "error": errors, "result": results}


class RowPredictor(Predictor):
    """A Ray Data actor as Predictor, whose batches come out as predict's rows (run.rows_of):
    one per path, with an ``error`` column, "" or why the image could not be read. An
    unreadable image's row has class -1, score NaN and empty labels (or no features), so
    that every batch has the same columns."""

    def __init__(self, *, top_k: int, names, **predictor):
        super().__init__(**predictor)
        self.top_k, self.names, self.embed = top_k, names, predictor["embed"]
        self.unreadable = {"features": np.zeros(0, np.float32)} if self.embed else self._blank_class_row()

    def _blank_class_row(self) -> dict:
        # run.rows_of's own columns for this model (its top-k is cut to the model's classes,
        # learnt from one blank image), each value blanked by its type.
        from PIL import Image

        with torch.inference_mode():
            classes = self.fast(self.transform(Image.new("RGB", (1, 1)))[None].to(self.dtype)).shape[1]
        sample = run.rows_of([""], [0], torch.zeros(1, classes), self.top_k, self.names, embed=False)[0]
        blank = {int: -1, float: float("nan"), str: ""}
        return {key: blank[type(value)] for key, value in sample.items() if key != "path"}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super().__call__(batch)
        rows = []
        for path, why, result in zip(outputs["path"], outputs["error"], outputs["result"]):
            if why:
                rows.append({"path": str(path), **self.unreadable})
            elif self.embed:
                rows.append({"path": str(path), "features": result})
            else:
                rows += run.rows_of([path], [0], torch.from_numpy(result[None]), self.top_k, self.names, embed=False)
        columns = {key: np.array([row[key] for row in rows]) for key in ["path", *self.unreadable] if key != "features"}
        if self.embed:  # an object column of vectors, as Predictor's results: some may be empty
            columns["features"] = np.empty(len(rows), dtype=object)
            for i, row in enumerate(rows):
                columns["features"][i] = row["features"]
        columns["error"] = outputs["error"]
        return columns


def _actors_over_paths(
    source, model, *, rows: bool, weights, batch_size, top_k, labels, embed, resize, crop, transforms, dtype, backend,
    actors, cpus_per_actor, address,
):  # fmt: skip
    """(the source's paths, its labels, a Dataset of them mapped by a pool of RowPredictor
    actors with ``rows``, else Predictor), after checking, before the cluster starts,
    everything that can fail without it. By default one actor per node, of the smallest
    node's CPUs."""
    ray = _import_ray()
    if batch_size < 1 or top_k < 1:
        raise ValueError(f"batch_size and top_k must be >= 1, got {batch_size} and {top_k}")
    if transforms:
        images.weights_preprocessing(transforms)  # a bad name fails here
    paths = sources.image_paths(source)
    build_model(model, weights)  # so do a model or weights that do not fit
    names = run.read_labels(labels)
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # rows in the source's order
    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
    cpus = cpus_per_actor or int(min(n["Resources"]["CPU"] for n in nodes))
    actor, row_options = (RowPredictor, dict(top_k=top_k, names=names)) if rows else (Predictor, {})
    dataset = ray.data.from_items([{"path": str(p)} for p in paths]).map_batches(
        actor, batch_size=batch_size, batch_format="numpy", concurrency=actors or len(nodes), num_cpus=cpus,
        fn_constructor_kwargs=dict(model=model, weights=weights, embed=embed, dtype=dtype, backend=backend,
                                   threads=cpus, resize=resize, crop=crop, transforms=transforms, **row_options),
    )  # fmt: skip
    return paths, names, dataset


def predict_dataset(
    source, model: str, *, weights=None, batch_size: int = 8, top_k: int = 1, labels=None, embed: bool = False,
    resize: int = images.RESIZE, crop: int = images.CROP, transforms: str | None = None,
    dtype: torch.dtype = torch.float32, backend: str = "auto",
    actors: int | None = None, cpus_per_actor: int | None = None, address: str | None = None,
):  # fmt: skip
    """A Ray Dataset of ``source``'s rows as ``fastresnet predict`` writes them (with ``embed``,
    the pooled features as one ``features`` column), plus ``error`` (see RowPredictor), made
    lazily by a pool of actors as in predict_with_ray. Write it with Ray Data's writers, e.g.
    ``predict_dataset("photos/", "resnet50", weights="r50.pth").write_parquet("out/")``, or go
    on transforming it; ``.filter(lambda row: not row["error"])`` keeps the readable images."""
    return _actors_over_paths(
        source, model, rows=True, weights=weights, batch_size=batch_size, top_k=top_k, labels=labels, embed=embed,
        resize=resize, crop=crop, transforms=transforms, dtype=dtype, backend=backend, actors=actors,
        cpus_per_actor=cpus_per_actor, address=address,
    )[2]  # fmt: skip


def predict_with_ray(
    source, model: str, out, *, weights=None, batch_size: int = 8, top_k: int = 1, labels=None, embed: bool = False,
    resize: int = images.RESIZE, crop: int = images.CROP, transforms: str | None = None,
    dtype: torch.dtype = torch.float32, backend: str = "auto",
    actors: int | None = None, cpus_per_actor: int | None = None, address: str | None = None, progress=None,
) -> run.PredictSummary:  # fmt: skip
    """As run.predict, with the model in a pool of ``actors`` Ray actors of ``cpus_per_actor``
    CPUs each (defaults: one per node, the smallest node's CPUs)."""
    out = Path(out)
    output.check_target(out)
    paths, names, dataset = _actors_over_paths(
        source, model, rows=False, weights=weights, batch_size=batch_size, top_k=top_k, labels=labels, embed=embed,
        resize=resize, crop=crop, transforms=transforms, dtype=dtype, backend=backend, actors=actors,
        cpus_per_actor=cpus_per_actor, address=address,
    )  # fmt: skip

    def outputs():
        for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
            errors = batch["error"]
            kept = [i for i, why in enumerate(errors) if not why]
            result = torch.from_numpy(np.stack([batch["result"][i] for i in kept])) if kept else None
            failed = [(str(batch["path"][i]), errors[i]) for i, why in enumerate(errors) if why]
            yield [Path(batch["path"][i]) for i in kept], result, failed

    return run.write_rows(outputs(), run.PredictSummary(images=len(paths), written=0, out=out), top_k, names, embed, progress)
