"""Per fused op: every fused conv of ResNet-50 (batch 1, 224x224, float32, CPU) timed against
the eager conv + BN (+ add) + ReLU it replaces, with the runner `fastresnet bench --per-layer`
uses. The table is printed at the end of the run.

Run:  .venv/bin/python -m pytest benchmarks/test_layers.py -q
"""

import os

import torch

import fastresnet
from fastresnet.bench import layers
from fastresnet.bench.models import build_model

from conftest import SECTIONS

ROUNDS = int(os.environ.get("FASTRESNET_BENCH_ROUNDS", "20"))


def test_resnet50_layers():
    model = build_model("resnet50")
    fast = fastresnet.optimize(model)
    timings = layers.time_layers(model, fast, torch.randn(1, 3, 224, 224), rounds=ROUNDS, warmup=3)
    assert len(timings) == 53  # every conv of ResNet-50 is a fused op
    SECTIONS.append(layers.markdown(timings, "resnet50, batch 1, 224x224, float32, cpu"))
