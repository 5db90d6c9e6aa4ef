"""Where fastresnet's int8 convs and OpenVINO + NNCF's differ: conv time by kind, one model.

    .venv/bin/python benchmarks/compare_int8_layers.py resnet50 8   # NNCF needs pip install nncf
    .venv/bin/python benchmarks/compare_int8_layers.py resnet50 1 --per-layer

--per-layer: instead, each distinct conv of fastresnet's model (by weight shape, stride and
residual) timed alone on 1 and then 2 threads, its rate against the int8 dot-product probe
measured on as many threads just before (the kernels' ceiling), median of 15 calls after 2.

fastresnet: each QuantizedConv2d of `quantize()`'s model (auto) timed alone, on the input the
model hands it, the median of 21 calls after 2; grouped by kernel size, stride and whether a
residual is added, with GOP/s (2 per multiply-add). OpenVINO: the same model after
nncf.quantize on the same 4 calibration batches (as `fastresnet bench --dtype int8` builds
it), its per-node times from PERF_COUNT, the mean of 7 inferences, grouped by the kernel
oneDNN runs (its 1x1 and its other convolutions). Both on torch's 2 threads.
"""

import collections
import sys
import time

import torch

import fastresnet
from fastresnet import _ext
from fastresnet.bench import int8_peers
from fastresnet.bench.models import build_model
from fastresnet.bench.suite import calibration_batches
from fastresnet.nn.int8 import QuantizedConv2d


def median_call_seconds(conv: QuantizedConv2d, args: tuple, calls: int) -> float:
    """The median of `calls` calls of the conv alone on its own input, after 2 untimed."""
    conv(*args), conv(*args)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        conv(*args)
        times.append(time.perf_counter() - start)
    return sorted(times)[calls // 2]


def conv_calls(fast: torch.nn.Module, x: torch.Tensor) -> dict:
    """Each QuantizedConv2d of `fast` with the arguments and output of its call on `x`, in call order."""
    calls = {}

    def keep(conv, args, out):  # returns None: a forward hook's value would replace the output
        calls[conv] = args, out

    hooks = [c.register_forward_hook(keep) for c in fast.modules() if isinstance(c, QuantizedConv2d)]
    with torch.inference_mode():
        fast(x)
    for hook in hooks:
        hook.remove()
    return calls


def fastresnet_convs(model: torch.nn.Module, x: torch.Tensor, calibration: list) -> dict:
    calls = conv_calls(fastresnet.quantize(model, calibration), x)
    groups = collections.defaultdict(lambda: [0, 0.0, 0])  # layers, ms, multiply-adds
    with torch.inference_mode():
        for conv, (args, out) in calls.items():
            seconds = median_call_seconds(conv, args, calls=21)
            kh, kw = conv.weight.shape[2:]
            key = f"{kh}x{kw}/s{conv.stride[0]}" + (" + residual" if conv.residual else "")
            group = groups[key]
            group[0] += 1
            group[1] += seconds * 1e3
            group[2] += out.numel() * conv.weight[0].numel()
    return groups


def per_layer_efficiency(model: torch.nn.Module, x: torch.Tensor, calibration: list) -> None:
    inputs = {}  # the first conv of each weight shape, stride and residual
    for conv, (args, out) in conv_calls(fastresnet.quantize(model, calibration), x).items():
        inputs.setdefault((tuple(conv.weight.shape), conv.stride, conv.residual is not None), (conv, args, out))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        peak = max(_ext.extension().int8_dot_peak_gops(threads, 50_000_000) for _ in range(3))
        print(f"{threads} thread(s): int8 dot peak {peak:.1f} GOP/s")
        with torch.inference_mode():
            for (shape, stride, residual), (conv, args, out) in inputs.items():
                seconds = median_call_seconds(conv, args, calls=15)
                rate = 2 * out.numel() * conv.weight[0].numel() / seconds / 1e9
                layer = f"{shape[1]}->{shape[0]} {shape[2]}x{shape[3]}/s{stride[0]} at {out.shape[-1]}"
                layer += " + residual" if residual else ""
                print(f"  {layer:34s} {seconds * 1e3:7.3f} ms {rate:6.1f} GOP/s {100 * rate / peak:5.1f}%")


def openvino_convs(model: torch.nn.Module, x: torch.Tensor, calibration: list, runs: int = 7) -> dict:
    import openvino

    quantized = int8_peers.nncf_quantized(model, x, calibration)
    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"}
    request = openvino.Core().compile_model(quantized, "CPU", config).create_infer_request()
    for _ in range(3):
        request.infer({0: x.numpy()})
    groups = collections.defaultdict(lambda: [0, 0.0])
    for _ in range(runs):
        request.infer({0: x.numpy()})
        for node in request.get_profiling_info():
            if node.status == node.Status.EXECUTED:
                group = groups[(node.node_type, node.exec_type)]
                group[0] += 1
                group[1] += node.real_time.total_seconds() * 1e3
    return {key: (count // runs, ms / runs) for key, (count, ms) in groups.items()}


def main(name: str, batch: int, per_layer: bool = False) -> None:
    torch.set_num_threads(2)
    model = build_model(name).eval()
    x = torch.randn(batch, 3, 224, 224)
    calibration = calibration_batches(x)
    if per_layer:
        print(f"{name} batch {batch}, 224x224, each conv alone")
        per_layer_efficiency(model, x, calibration)
        return
    print(f"{name} batch {batch}, 224x224, {torch.get_num_threads()} threads")
    print("fastresnet int8 convs, each timed alone:")
    groups = fastresnet_convs(model, x, calibration)
    for key, (layers, ms, macs) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"  {key:22s} x{layers:2d} {ms:8.3f} ms  {2 * macs / ms / 1e6:6.1f} GOP/s")
    print(f"  {'all convs':22s}     {sum(g[1] for g in groups.values()):8.3f} ms")
    try:
        nodes = openvino_convs(model, x, calibration)
    except int8_peers.Unavailable as reason:
        print(f"OpenVINO + NNCF: {reason}")
        return
    print("OpenVINO + NNCF int8, per node (PERF_COUNT):")
    for (node_type, exec_type), (count, ms) in sorted(nodes.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"  {node_type:14s} {exec_type:24s} x{count:2d} {ms:8.3f} ms")
    convs = sum(ms for (node_type, _), (_, ms) in nodes.items() if node_type == "Convolution")
    print(f"  {'all convs':39s}     {convs:8.3f} ms; every node {sum(ms for _, ms in nodes.values()):.3f} ms")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--per-layer"]
    main(args[0] if args else "resnet50", int(args[1]) if len(args) > 1 else 1, "--per-layer" in sys.argv)
