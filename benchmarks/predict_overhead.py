"""`fastresnet predict` against the optimized model alone: what decoding and writing add.

    .venv/bin/python benchmarks/predict_overhead.py resnet50 8   # model, batch size

Writes 64 JPEGs of 500x375 (ImageNet's typical size; smooth gradients with noise, so that
they compress and decode like photographs more than like pure noise) to a temporary folder,
then alternates, 3 rounds: predict over them (decoding in its default workers, the default
preprocessing, CSV rows), and the same optimized model on the same number of preprocessed
random batches. Medians of the rounds, ms per image, and their ratio.
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

IMAGES = 64


def write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    for i in range(IMAGES):
        base = np.stack([(x * (i + 1) % 256), (y * 3 + i * 7) % 256, ((x + y) // 2) % 256], axis=-1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:03d}.jpg", quality=90)


def main(name: str, batch: int, rounds: int = 3) -> None:
    torch.set_num_threads(2)
    model = build_model(name)
    fast = fastresnet.optimize(model)
    inputs = [torch.randn(batch, 3, 224, 224) for _ in range(IMAGES // batch)]
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder))
        weights = Path(folder) / "weights.pth"
        torch.save(model.state_dict(), weights)
        times = {"predict": [], "model alone": []}
        with torch.inference_mode():
            fast(inputs[0])
        for _ in range(rounds):
            summary = predict(folder, name, Path(folder) / "rows.csv", weights=weights, batch_size=batch)
            times["predict"].append(summary.seconds / summary.written * 1e3)
            start = time.perf_counter()
            with torch.inference_mode():
                for x in inputs:
                    fast(x)
            times["model alone"].append((time.perf_counter() - start) / IMAGES * 1e3)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}, batch {batch}, {IMAGES} JPEGs of 500x375, 2 threads, medians of {rounds} rounds")
    for label, ms in medians.items():
        print(f"  {label:12s} {ms:7.2f} ms per image")
    print(f"  predict / model alone: {medians['predict'] / medians['model alone']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "resnet50", int(sys.argv[2]) if len(sys.argv) > 2 else 8)
