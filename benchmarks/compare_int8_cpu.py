"""fastresnet int8 against its float32 and the int8 reference, interleaved in one process, with
where the int8 model's time goes.

    .venv/bin/python benchmarks/compare_int8_cpu.py resnet50 1

Candidates: float32 (auto: the C++ kernels, Winograd where it pays), int8 on auto's backend
(oneDNN's convs on a CPU with AMX, else the C++ kernels), int8 on the C++ kernels where auto
took oneDNN, int8 with 8-bit weights where auto's default is 7 (CPUs without VNNI), OpenVINO
after NNCF post-training quantization on the same calibration batches (where nncf is
installed: pip install nncf), and at batch 1 the int8 reference (plain PyTorch, the same
answers). The int8 models are calibrated on 4 random batches: the speed does not depend on
the ranges. Each round runs every candidate twice, after one untimed call (as fastresnet
bench does), and keeps the mean; medians of 5 rounds are printed, then where the int8
model's time goes (torch.profiler, one call) and its convs' rate against the measured peak of
the int8 dot products they run on (the extension's probe: VPDPBUSD on the VNNI tiers).
"""

import sys
import time

import torch

import fastresnet
from fastresnet import _ext
from fastresnet.bench import int8_peers
from fastresnet.bench.models import build_model
from fastresnet.bench.peers import Unavailable
from fastresnet.nn.int8 import QuantizedConv2d


def openvino_nncf_int8(model: torch.nn.Module, calibration: list, example: torch.Tensor):
    """OpenVINO's int8 model by NNCF, as `fastresnet bench --dtype int8` builds it; None without nncf."""
    try:
        return int8_peers.openvino_nncf(model, example, calibration)
    except Unavailable:
        return None


def main(name: str, batch: int, rounds: int = 5) -> None:
    torch.set_num_threads(2)
    model = build_model(name)
    x = torch.randn(batch, 3, 224, 224)
    calibration = [torch.randn(batch, 3, 224, 224) for _ in range(4)]
    int8 = fastresnet.quantize(model, calibration)
    chosen = fastresnet.explain(int8).info.backend
    candidates = {"fp32 auto": fastresnet.optimize(model), f"int8 {chosen}": int8}
    if chosen != "cpp-cpu":
        candidates["int8 cpp-cpu"] = fastresnet.quantize(model, calibration, backend="cpp-cpu")
    if "7 bits" in " ".join(fastresnet.explain(int8).info.notes):  # a tier without VNNI: 8-bit weights run slower
        candidates["int8 8-bit weights"] = fastresnet.quantize(model, calibration, weight_bits=8)
    nncf_int8 = openvino_nncf_int8(model, calibration, x)
    if nncf_int8 is not None:
        candidates["int8 OpenVINO+NNCF"] = nncf_int8
    if batch == 1:
        candidates["int8 reference"] = fastresnet.quantize(model, calibration, backend="reference")
    times = {k: [] for k in candidates}
    with torch.inference_mode():
        for fast in candidates.values():
            fast(x)  # warm: output memory, packed weights
        for _ in range(rounds):
            for label, fast in candidates.items():
                fast(x)  # untimed: the previous candidate's threads stop spinning (fastresnet.bench.runner)
                start = time.perf_counter()
                fast(x)
                fast(x)
                times[label].append((time.perf_counter() - start) / 2 * 1e3)
    base = sorted(times["fp32 auto"])[rounds // 2]
    print(f"{name} batch {batch}, 224x224, 2 threads, medians of {rounds} rounds")
    for label, values in times.items():
        median = sorted(values)[rounds // 2]
        print(f"  {label:16s} {median:8.2f} ms   {base / median:5.2f}x fp32")
    with torch.inference_mode(), torch.profiler.profile() as prof:
        int8(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    if chosen == "cpp-cpu":
        conv_rate_against_peak(int8, x, prof)


def conv_rate_against_peak(int8: torch.nn.Module, x: torch.Tensor, prof) -> None:
    """The int8 convs' GOP/s in the profiled call (2 per multiply-add) against the probe's peak."""
    macs = []

    def count(conv, args, out):
        macs.append(out.numel() * conv.weight[0].numel())

    hooks = [m.register_forward_hook(count) for m in int8.modules() if isinstance(m, QuantizedConv2d)]
    with torch.inference_mode():
        int8(x)
    for hook in hooks:
        hook.remove()
    (conv,) = [e for e in prof.key_averages() if e.key == "fastresnet::cpp_int8_conv2d"]
    rate = 2 * sum(macs) / (conv.self_cpu_time_total * 1e-6) / 1e9
    peak = max(_ext.extension().int8_dot_peak_gops(torch.get_num_threads(), 50_000_000) for _ in range(3))
    print(f"int8 convs: {rate:.0f} GOP/s, {rate / peak:.0%} of the measured {_ext.cpu_isa()} int8 dot peak "
          f"({peak:.0f} GOP/s, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "resnet50", int(sys.argv[2]) if len(sys.argv) > 2 else 1)
