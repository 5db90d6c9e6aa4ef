"""`fastresnet predict` against the optimized model alone: what decoding and writing add.

    .venv/bin/python benchmarks/predict_overhead.py resnet50 8   # model, batch size
    .venv/bin/python benchmarks/predict_overhead.py resnet50 8 ray 256   # and --engine ray, 256 images

Writes the JPEGs (64 by default) of 500x375 (ImageNet's typical size; smooth gradients with
noise, so that they compress and decode like photographs more than like pure noise) to a
temporary folder, then alternates, 3 rounds: predict over them (decoding in its default
workers, the default preprocessing, CSV rows), and the same optimized model on the same
number of random batches. Medians of the rounds, ms per image, and the ratios. With "ray", a
local Ray cluster of the machine's CPUs is started first, and the Ray engine runs too, with
one actor of every CPU and with one actor per CPU; its time includes starting the actors and
optimizing the model in each, where the local path's starts after its optimize().
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fastresnet
from fastresnet.bench.models import build_model
from fastresnet.predict import predict

def write_images(folder: Path, count: int = 64) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    for i in range(count):
        base = np.stack([(x * (i + 1) % 256), (y * 3 + i * 7) % 256, ((x + y) // 2) % 256], axis=-1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:03d}.jpg", quality=90)


def main(name: str, batch: int, engines: str = "local", images: int = 64, rounds: int = 3) -> None:
    torch.set_num_threads(2)
    model = build_model(name)
    fast = fastresnet.optimize(model)
    inputs = [torch.randn(batch, 3, 224, 224) for _ in range(images // batch)]
    runs = {"predict": lambda folder, weights: predict(folder, name, Path(folder) / "rows.csv", weights=weights, batch_size=batch)}
    if "ray" in engines:
        import os

        import ray

        from fastresnet.predict.ray_engine import predict_with_ray

        cpus = os.cpu_count()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for actors, per_actor in ((1, cpus), (cpus, 1)):
            runs[f"ray, {actors} actor(s) of {per_actor} CPU(s)"] = lambda folder, weights, a=actors, c=per_actor: predict_with_ray(
                folder, name, Path(folder) / "rows.csv", weights=weights, batch_size=batch, actors=a, cpus_per_actor=c
            )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), images)
        weights = Path(folder) / "weights.pth"
        torch.save(model.state_dict(), weights)
        times = {label: [] for label in runs} | {"model alone": []}
        with torch.inference_mode():
            fast(inputs[0])
        for _ in range(rounds):
            for label, go in runs.items():
                summary = go(folder, weights)
                times[label].append(summary.seconds / summary.written * 1e3)
            start = time.perf_counter()
            with torch.inference_mode():
                for x in inputs:
                    fast(x)
            times["model alone"].append((time.perf_counter() - start) / len(inputs) / batch * 1e3)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}, batch {batch}, {images} JPEGs of 500x375, 2 threads, medians of {rounds} rounds, ms per image")
    for label, ms in medians.items():
        print(f"  {label:34s} {ms:7.2f}   {ms / medians['model alone']:.3f}x the model alone")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "resnet50", int(args[1]) if len(args) > 1 else 8, args[2] if len(args) > 2 else "local",
         int(args[3]) if len(args) > 3 else 64)  # fmt: skip
