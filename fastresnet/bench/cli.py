"""The command line: `fastresnet bench`, `fastresnet verify` and `fastresnet predict` (also `python -m fastresnet`)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from .. import backends
from ..api import SUPPORTED_DTYPES, DTYPE_NAMES
from ..quantization import ESTIMATORS
from . import int8_peers, layers, machine, peers, report
from .models import MODEL_NAMES, build_model, check_model_name
from .suite import Progress, run_benchmark
from .verify import markdown as verify_markdown
from .verify import train_on_digits, verify_digits, verify_int8_digits, verify_nncf_int8_digits, verify_random


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _dtype(text: str) -> torch.dtype:
    dtype = torch.int8 if text == "int8" else DTYPE_NAMES.get(text)
    if dtype not in (*SUPPORTED_DTYPES, torch.int8):
        valid = ", ".join(str(d).removeprefix("torch.") for d in (*SUPPORTED_DTYPES, torch.int8))
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; valid dtypes are {valid}")
    return dtype


def _device(text: str) -> torch.device:
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; valid devices are cpu, cuda")
    if text == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("device cuda was asked for, but CUDA is not available here")
    return torch.device(text)


def _add_common(parser: argparse.ArgumentParser, default_models: str) -> None:
    parser.add_argument("--models", default=default_models, help=f"comma-separated, from: {', '.join(MODEL_NAMES)}")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--dtype", type=_dtype, default=torch.float32, help="float32, float16, bfloat16, or int8 (CPU only)"
    )
    parser.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="directory for the reports")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fastresnet", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time eager, peers and fastresnet, interleaved")
    _add_common(bench, "resnet50")
    bench.add_argument("--batch-sizes", type=_ints, default=[1, 8])
    bench.add_argument(
        "--backends", default=None, help=f"comma-separated, from: {', '.join(peers.candidate_names())}; "
        "default: all that can run here"
    )  # fmt: skip
    bench.add_argument("--repeats", type=int, default=20, help="timed rounds")
    bench.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate")
    bench.add_argument("--per-layer", action="store_true", help="also time every fused conv against eager")
    bench.add_argument(
        "--cpu-isa", choices=tuple(machine.CPU_ISA_ENV), default=None,
        help="cap fastresnet's CPU kernels and the oneDNN/ATen/MKL peers (eager, eager-channels-last, "
        "torch-compile) to this instruction set; peers that cannot be capped (onnxruntime, openvino) are left out",
    )  # fmt: skip
    verify = commands.add_parser("verify", help="errors against fp64 eager; real data with real BN statistics")
    _add_common(verify, "resnet18,resnet50")
    verify.set_defaults(image_size=64)
    verify.add_argument("--backends", default="fastresnet", help="fastresnet or fastresnet-NAME, comma-separated")
    verify.add_argument("--digits-steps", type=int, default=150, help="training steps of the digits ResNet-18")
    verify.add_argument("--no-digits", action="store_true", help="skip the real-data check")
    verify.add_argument(
        "--range-estimator", choices=ESTIMATORS, default=ESTIMATORS[0], help="int8: how activation ranges are calibrated"
    )
    verify.add_argument(
        "--weight-bits", type=int, choices=(7, 8), default=None,
        help="int8: the weights' width (default: the backend's, 7 on CPUs without VNNI; see fastresnet.quantize)",
    )  # fmt: skip
    predict = commands.add_parser("predict", help="classify or embed image files with the optimized model")
    predict.add_argument("source", help="a folder (recursively), a glob pattern, a text file of paths, or an image")
    predict.add_argument("--model", required=True, help="a torchvision ResNet name (e.g. resnet50) or module:callable")
    predict.add_argument("--weights", default=None, help="a local state_dict or checkpoint (loaded with weights_only)")
    predict.add_argument("--out", type=Path, required=True, help="the rows: a .csv or .parquet file")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--top-k", type=int, default=1, help="also write the K best classes and their scores")
    predict.add_argument("--labels", default=None, help="a text file of class names, one per line")
    predict.add_argument("--embed", action="store_true", help="write the pooled features instead of classes")
    predict.add_argument("--resize", type=int, default=256, help="the short side, before the center crop")
    predict.add_argument("--crop", type=int, default=224, help="the center crop's side")
    predict.add_argument(
        "--transforms", default=None, help="instead: the preprocessing of torchvision weights, e.g. ResNet50_Weights.IMAGENET1K_V2"
    )
    predict.add_argument("--dtype", type=_dtype, default=torch.float32, help="float32, bfloat16 or float16")
    predict.add_argument("--backend", default="auto", help="the fastresnet backend (default: auto)")
    predict.add_argument("--workers", type=int, default=None, help="decoding processes (default: the CPUs the model's threads leave free)")
    predict.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    predict.add_argument("--engine", choices=("local", "ray"), default="local", help="this process, or Ray actors")
    predict.add_argument("--address", default=None, help="ray: an existing cluster (default: RAY_ADDRESS, else a local one)")
    predict.add_argument("--actors", type=int, default=None, help="ray: model actors (default: one per node)")
    predict.add_argument("--cpus-per-actor", type=int, default=None, help="ray: CPUs (and threads) per actor")
    return main


def predict_command(args) -> int:
    """Exit status 0 when every image was read, 1 when some were skipped (listed on stderr)."""
    from ..predict import predict
    from ..predict.run import print_progress

    if args.dtype == torch.int8:
        print("fastresnet predict: --dtype int8 needs calibration data: quantize with fastresnet.quantize, "
              "then call fastresnet.predict.predict with the model", file=sys.stderr)  # fmt: skip
        return 2
    if args.weights is None:
        print("note: no --weights: the model's weights are random, and so are its predictions", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = dict(
        weights=args.weights, batch_size=args.batch_size, top_k=args.top_k, labels=args.labels, embed=args.embed,
        resize=args.resize, crop=args.crop, transforms=args.transforms, dtype=args.dtype, backend=args.backend,
        progress=print_progress,
    )  # fmt: skip
    try:
        if args.engine == "ray":
            from ..predict.ray_engine import predict_with_ray

            summary = predict_with_ray(
                args.source, args.model, args.out, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                address=args.address, **common,
            )  # fmt: skip
        else:
            summary = predict(args.source, args.model, args.out, workers=args.workers, **common)
    except ValueError as error:
        print(f"fastresnet predict: {error}", file=sys.stderr)
        return 2
    for path, why in summary.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(
        f"wrote {summary.written} rows to {summary.out} ({summary.images} images, {len(summary.failed)} skipped; "
        f"{summary.images_per_s:.1f} images/s, decoding included)"
    )
    return 1 if summary.failed else 0


def default_candidates(device: torch.device, dtype: torch.dtype) -> list[str]:
    """Every peer and fastresnet (its auto choice), plus each other backend that can run
    here in ``dtype`` at full speed (not Triton's CPU interpreter). In int8, the peers that
    quantize (int8_peers.py) and the float32 eager model as the baseline."""
    chosen, _ = backends.select_backend("auto", device, dtype)
    extra = [
        f"fastresnet-{b.name}"
        for b in backends.BACKENDS.values()
        if b is not chosen and b.priority(device) >= 0 and not backends.reasons_against(b, device, dtype)
    ]
    names = [p for p in peers.PEERS if dtype != torch.int8 or p not in int8_peers.FLOAT_ONLY]
    return [*names, "fastresnet", *extra]


def _validate(args, parse: argparse.ArgumentParser) -> None:
    try:
        args.models = [check_model_name(m) for m in _list(args.models)]
        if args.backends is not None:
            args.backends = [peers.check_candidate_name(b) for b in _list(args.backends)]
    except ValueError as error:
        parse.error(str(error))
    if args.command == "verify" and not all(peers.is_fastresnet(b) for b in args.backends):
        parse.error("verify --backends takes fastresnet or fastresnet-NAME: it checks fastresnet against eager")
    if args.dtype == torch.int8 and args.command == "bench" and args.per_layer:
        parse.error("--per-layer times fused float convs against eager's: it takes float32, float16 or bfloat16")
    cpu_isa = getattr(args, "cpu_isa", None)
    if args.device is None:
        on_cpu = cpu_isa or args.dtype == torch.int8  # int8 runs on CPU only
        args.device = torch.device("cuda" if torch.cuda.is_available() and not on_cpu else "cpu")
    if args.command == "bench" and args.dtype == torch.int8 and args.device.type != "cpu":
        parse.error("--dtype int8 runs on the CPU only: it takes --device cpu")
    if cpu_isa:
        if args.device.type != "cpu":
            parse.error("--cpu-isa caps the CPU kernels: it takes --device cpu")
        missing = machine.cpu_isa_missing_flags(cpu_isa)
        if missing:
            parse.error(f"--cpu-isa {cpu_isa}: this CPU lacks {', '.join(missing)}")
    if args.threads:
        torch.set_num_threads(args.threads)


def _rerun_with_cpu_isa(cap: str, argv: list[str]) -> int:
    """Run the same command again in a fresh interpreter with ``cap``'s variables in its
    environment. oneDNN, ATen, MKL and fastresnet's extension each read their cap once, at
    their first use, and this process (or whatever imported this module: a test session, a
    notebook) may have used them already; only a fresh process is sure to take the cap."""
    env = dict(os.environ, **machine.CPU_ISA_ENV[cap])
    return subprocess.run([sys.executable, "-m", "fastresnet", *argv], env=env).returncode


def bench(args) -> int:
    candidates = args.backends or default_candidates(args.device, args.dtype)
    left_out = {}
    if args.cpu_isa:
        left_out = {
            c: f"cannot be capped to {args.cpu_isa}: {peers.UNCAPPABLE_PEERS[c]}"
            for c in candidates
            if c in peers.UNCAPPABLE_PEERS
        }
        candidates = [c for c in candidates if c not in left_out]
    progress = Progress(len(args.models) * len(args.batch_sizes))
    result = run_benchmark(
        args.models, args.batch_sizes, args.image_size, args.dtype, args.device, candidates, args.repeats, args.warmup,
        progress, left_out,
    )  # fmt: skip
    peak, source = machine.peak_flops(args.device, args.dtype)
    peer_notes = []
    if args.device.type == "cpu" and "openvino" in candidates and peers.openvino_default_precision():
        # So that no reader takes the pinned precision for OpenVINO's own choice on this CPU.
        default = peers.openvino_default_precision()
        if args.dtype == torch.int8:
            how = "the openvino candidate (NNCF int8) ran with it, for whatever NNCF left unquantized"
        else:
            how = f"the openvino candidate ran with the hint {peers.OPENVINO_PRECISION.get(args.dtype, '-')}"
        peer_notes.append(
            f"OpenVINO's own default precision on this CPU: {default} (its INFERENCE_PRECISION_HINT when none is given); {how}"
        )
    context = report.Context(
        args.dtype, args.device, args.image_size, machine.describe(args.device), peak, source,
        cpu_isa=args.cpu_isa or "none", cpu_isa_env=machine.cpu_isa_env_now(), left_out=left_out,
        cpu_flags=machine.describe_cpu_flags() if args.device.type == "cpu" else None, peer_notes=peer_notes,
    )  # fmt: skip
    rows = report.rows(result, context)
    sections = []
    if args.per_layer:
        for name in args.models:
            model = build_model(name)
            fast = peers.build("fastresnet", model, args.dtype, args.device, None)  # folds from float32
            model = model.to(device=args.device, dtype=args.dtype)  # the eager side, in the same dtype
            x = torch.randn(args.batch_sizes[0], 3, args.image_size, args.image_size).to(args.device, args.dtype)
            timings = layers.time_layers(model, fast, x, args.repeats, args.warmup)
            sections.append(layers.markdown(timings, f"{name}, batch {args.batch_sizes[0]}"))
            args.out.mkdir(parents=True, exist_ok=True)
            if layers.plot(timings, args.out / f"per_layer_{name}.png") is None:
                sections.append(f"![per-layer times of {name}](per_layer_{name}.png)\n")
    notes = report.write(args.out, rows, context, sections)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    failed = [r for r in rows if r["metric"] == "status"]
    for r in failed:
        print(f"{r['model']} batch {r['batch']} {r['backend']}: {r['status']}: {r['note']}", file=sys.stderr)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'results.json'}")
    return 0


def verify(args) -> int:
    backend_names = [b.removeprefix("fastresnet").removeprefix("-") or "auto" for b in args.backends]
    rows = []
    if args.dtype == torch.int8 and (args.no_digits or args.device.type != "cpu"):
        print("verify --dtype int8 checks the digits model on the CPU only: nothing to do", file=sys.stderr)
        return 2
    # int8: one digits model, trained once, for every row (quantizing it leaves it as it is).
    digits_model = train_on_digits(args.digits_steps) if args.dtype == torch.int8 else None
    for backend in backend_names:
        if args.dtype == torch.int8:  # real data only: int8 has no eager in its dtype to judge random data by
            rows.append(verify_int8_digits(backend, digits_model, args.range_estimator, weight_bits=args.weight_bits))
            continue
        for name in args.models:
            rows.append(verify_random(name, backend, args.dtype, args.device, args.image_size))
        if not args.no_digits:
            rows.append(verify_digits(backend, args.dtype, args.device, args.digits_steps))
    if args.dtype == torch.int8:
        try:
            rows.append(verify_nncf_int8_digits(digits_model))
        except peers.Unavailable as reason:
            print(f"note: no NNCF row to compare with: {reason}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verify.json").write_text(json.dumps([r.as_dict() for r in rows], indent=1))
    text = verify_markdown(rows)
    (args.out / "verify.md").write_text(text)
    print(text)
    return 0 if all(r.passed for r in rows if not r.peer) else 1


def main(argv: list[str] | None = None) -> int:
    parse = parser()
    args = parse.parse_args(argv)
    if args.command == "predict":
        return predict_command(args)
    _validate(args, parse)
    if args.command == "verify":
        return verify(args)
    if args.cpu_isa and not machine.cpu_isa_env_in_effect(args.cpu_isa):
        return _rerun_with_cpu_isa(args.cpu_isa, sys.argv[1:] if argv is None else argv)
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
