"""`fastresnet bench` and `fastresnet verify` end to end, on a tiny image size."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from fastresnet import _ext, backends
from fastresnet.bench import cli, machine, peers
from fastresnet.bench.models import build_model
from fastresnet.bench.suite import answer_error, reference64
from fastresnet.numerics import INT8_BENCH_ERROR

ROW_KEYS = {
    "model", "backend", "dtype", "device", "batch", "image_size", "metric", "p20", "p50", "p80",
    "machine", "cpu_isa", "versions", "timestamp", "status", "note",
}  # fmt: skip


def run_bench(tmp_path, *extra):
    argv = ["bench", "--models", "resnet18", "--batch-sizes", "1,2", "--image-size", "32", "--repeats", "3",
            "--warmup", "1", "--device", "cpu", "--out", str(tmp_path), *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return json.loads((tmp_path / "results.json").read_text()), (tmp_path / "report.md").read_text()


def test_bench_end_to_end(tmp_path):
    rows, report = run_bench(
        tmp_path, "--backends", "eager,eager-channels-last,fastresnet,fastresnet-reference", "--per-layer"
    )
    assert all(set(row) == ROW_KEYS for row in rows)
    latency = [r for r in rows if r["metric"] == "latency_ms"]
    assert {(r["backend"], r["batch"]) for r in latency} == {
        (b, n) for b in ("eager", "eager-channels-last", "fastresnet", "fastresnet-reference") for n in (1, 2)
    }
    metrics = {r["metric"] for r in rows}
    assert {"ms_per_image", "images_per_s", "gflops_per_s", "percent_of_peak", "speedup_vs_eager", "setup_s"} <= metrics
    setup = {(r["backend"], r["batch"]): r["p50"] for r in rows if r["metric"] == "setup_s"}
    assert set(setup) == {(r["backend"], r["batch"]) for r in latency} and all(s > 0 for s in setup.values())
    # The derived metrics agree with the latencies they come from.
    by_key = {(r["backend"], r["batch"], r["metric"]): r for r in rows}
    for r in latency:
        derived = lambda metric: by_key[(r["backend"], r["batch"], metric)]  # noqa: E731
        assert derived("ms_per_image")["p50"] == pytest.approx(r["p50"] / r["batch"])
        # Throughput inverts latency: its p20 comes from the latency's p80, and its p80 from p20.
        images, per_second = derived("images_per_s"), 1e3 * r["batch"]
        assert (images["p20"], images["p80"]) == pytest.approx((per_second / r["p80"], per_second / r["p20"]))
        eager_ms = by_key[("eager", r["batch"], "latency_ms")]["p50"]
        assert derived("speedup_vs_eager")["p50"] == pytest.approx(eager_ms / r["p50"])
    assert "| fastresnet | " in report and "## resnet18, batch 2" in report and "| peak MiB | setup s |" in report
    assert {r["cpu_isa"] for r in rows} == {"none"} and "- CPU ISA cap: none" in report
    assert "- CPU flags: " in report and "- FMA peak (avx" in report
    (peak_note,) = {r["note"] for r in rows if r["metric"] == "percent_of_peak"}
    assert peak_note.startswith("of FMA peak (avx")
    assert "## Per layer: resnet18, batch 1" in report and "| conv1 | 3->64 7x7/s2" in report
    for png in ("speedup.png", "per_layer_resnet18.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unavailable_backend_is_reported_with_its_reason(tmp_path):
    rows, report = run_bench(tmp_path, "--dtype", "float16", "--backends", "eager,fastresnet-cpp-cpu")
    (unavailable,) = {r["note"] for r in rows if r["backend"] == "fastresnet-cpp-cpu"}
    assert "the C++ CPU kernels take float32, bfloat16 or int8, not float16" in unavailable
    assert "| fastresnet-cpp-cpu | unavailable |" in report


def test_a_failing_or_wrong_backend_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    real_build = peers.build

    def build(name, model, dtype, device, example, calibration=None):
        run = real_build(name, model, dtype, device, example, calibration)
        if name == "eager-channels-last":  # answers wrongly
            return lambda x: run(x) + 1.0
        if name == "fastresnet":  # fails on its fourth call, in the middle of the timed rounds
            calls = []

            def flaky(x):
                calls.append(1)
                if len(calls) == 4:
                    raise RuntimeError("kernel exploded")
                return run(x)

            return flaky
        return run

    monkeypatch.setattr(peers, "build", build)
    rows, report = run_bench(tmp_path, "--backends", "eager,eager-channels-last,fastresnet")
    status = {(r["backend"], r["batch"]): r for r in rows if r["metric"] == "status"}
    assert status[("fastresnet", 1)]["status"] == "failed"
    assert status[("fastresnet", 1)]["note"] == "RuntimeError: kernel exploded"
    assert status[("eager-channels-last", 2)]["note"].startswith("wrong answer: max |out - fp64| = ")
    assert {r["backend"] for r in rows if r["metric"] == "latency_ms"} == {"eager"}
    assert "- fastresnet: failed: RuntimeError: kernel exploded" in report


def test_bench_in_int8_quantizes_each_engine_on_the_same_batches_and_reports_its_error(tmp_path):
    rows, report = run_bench(
        tmp_path, "--dtype", "int8", "--backends", "eager,eager-channels-last,onnxruntime,openvino,torch-compile,fastresnet"
    )  # fmt: skip
    assert {r["dtype"] for r in rows} == {"int8"}
    ok = {r["backend"] for r in rows if r["metric"] == "latency_ms"}
    status = {r["backend"]: r for r in rows if r["metric"] == "status"}
    assert {"eager", "fastresnet"} <= ok
    for candidate, module in (("onnxruntime", "onnxruntime"), ("openvino", "nncf"), ("torch-compile", "torchao")):
        if importlib.util.find_spec(module):
            assert candidate in ok, status.get(candidate)
        else:
            assert status[candidate]["status"] == "unavailable" and f"{module} is not installed" in status[candidate]["note"]
    assert status["eager-channels-last"]["status"] == "unavailable"
    assert "no int8 form" in status["eager-channels-last"]["note"]
    errors = {(r["backend"], r["batch"]): r["p50"] for r in rows if r["metric"] == "error_vs_fp64"}
    assert {b for b, _ in errors} == ok
    for (candidate, batch), error in errors.items():
        if candidate == "eager":  # the float32 baseline
            assert error < 1e-5
        else:  # quantized, so off float64 by more than float32's rounding, and within the bench's bound
            assert 1e-4 < error < INT8_BENCH_ERROR, (candidate, batch, error)
    assert "- int8 dot peak (" in report and "| error / scale |" in report


def test_int8_default_candidates_are_the_engines_that_quantize():
    cpu = torch.device("cpu")
    names = cli.default_candidates(cpu, torch.int8)
    assert names[:5] == ["eager", "torch-compile", "onnxruntime", "openvino", "fastresnet"]
    chosen, _ = backends.select_backend("auto", cpu, torch.int8)
    assert {n.removeprefix("fastresnet-") for n in names[5:]} == {
        b.name for b in backends.BACKENDS.values()
        if b is not chosen and b.priority(cpu) >= 0 and not backends.reasons_against(b, cpu, torch.int8)
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "--models", "resnet9"], "unknown model 'resnet9'; valid models are resnet18, resnet34"),
        (["bench", "--backends", "tensorrt"], "unknown backend 'tensorrt'; valid backends are eager, eager-channels-last"),
        (["bench", "--dtype", "int4"], "unknown dtype 'int4'; valid dtypes are float32, float16, bfloat16, int8"),
        (["bench", "--dtype", "int8", "--per-layer"], "--per-layer times fused float convs against eager's"),
        (["bench", "--batch-sizes", "1,x"], "expected comma-separated integers"),
        (["bench", "--cpu-isa", "sse4"], "argument --cpu-isa: invalid choice: 'sse4'"),
        (["verify", "--models", "vgg16"], "unknown model 'vgg16'"),
        (["verify", "--backends", "eager"], "verify --backends takes fastresnet or fastresnet-NAME"),
    ],
)
def test_bad_arguments_list_the_valid_choices(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_default_candidates_are_everything_that_can_run():
    names = cli.default_candidates(torch.device("cpu"), torch.float32)
    assert names[:6] == ["eager", "eager-channels-last", "torch-compile", "onnxruntime", "openvino", "fastresnet"]
    assert "fastresnet-triton" not in names  # the CPU interpreter is for tests, not for timing
    assert names[6:] == ["fastresnet-reference"]  # fastresnet itself is cpp-cpu, auto's choice
    # In bfloat16 auto takes onednn on a CPU with AMX (the C++ CPU kernels are then offered
    # beside it), else the C++ CPU kernels; the reference backend always.
    amx = bool(_ext.cpu_features()["amx_bf16"])
    expected = ["fastresnet", "fastresnet-cpp-cpu", "fastresnet-reference"] if amx else ["fastresnet", "fastresnet-reference"]
    assert cli.default_candidates(torch.device("cpu"), torch.bfloat16)[5:] == expected


def test_cpu_isa_reruns_the_command_with_the_caps_in_the_environment(monkeypatch):
    for name in machine.CPU_ISA_ENV["avx2"]:
        monkeypatch.delenv(name, raising=False)
    calls = []

    def run(argv, env):
        calls.append((argv, env))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", run)
    argv = ["bench", "--models", "resnet18", "--cpu-isa", "avx2"]
    assert cli.main(argv) == 0
    ((child_argv, env),) = calls
    assert child_argv == [sys.executable, "-m", "fastresnet", *argv]
    assert {k: env[k] for k in machine.CPU_ISA_ENV["avx2"]} == {
        "FASTRESNET_CPU_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    }  # fmt: skip


@pytest.mark.skipif(machine.cpu_isa_missing_flags("avx2"), reason="the CPU lacks AVX2/FMA")
def test_cpu_isa_caps_the_run_and_leaves_out_the_uncappable_peers(tmp_path):
    # The real thing: a fresh process with the caps set, as the report shows from inside it.
    rows, report = run_bench(
        tmp_path, "--batch-sizes", "1", "--repeats", "1", "--backends", "eager,onnxruntime,openvino,fastresnet",
        "--cpu-isa", "avx2",
    )  # fmt: skip
    assert {r["cpu_isa"] for r in rows} == {"avx2"}
    assert {r["backend"] for r in rows if r["metric"] == "latency_ms"} == {"eager", "fastresnet"}
    left_out = {r["backend"]: r for r in rows if r["metric"] == "status"}
    assert set(left_out) == {"onnxruntime", "openvino"}
    assert all(r["status"] == "left out" for r in left_out.values())
    assert all(r["note"].startswith("cannot be capped to avx2: ") for r in left_out.values())
    assert (
        "- CPU ISA cap: avx2 (FASTRESNET_CPU_ISA=avx2, ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2, "
        "MKL_ENABLE_INSTRUCTIONS=AVX2); left out, as they cannot be capped to avx2: onnxruntime, openvino"
    ) in report
    assert "| openvino | left out |" in report and "- FMA peak (avx2, measured): " in report


def test_cpu_isa_refuses_cuda_and_a_cap_the_cpu_lacks(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit):
        cli.main(["bench", "--cpu-isa", "avx2", "--device", "cuda"])
    assert "--cpu-isa caps the CPU kernels: it takes --device cpu" in capsys.readouterr().err
    monkeypatch.setattr(machine, "cpu_flags", lambda: dict.fromkeys(machine.CPU_FLAGS, False))
    with pytest.raises(SystemExit):
        cli.main(["bench", "--cpu-isa", "avx512", "--device", "cpu"])
    message = "--cpu-isa avx512: this CPU lacks avx2, fma, avx512f, avx512bw, avx512vl, avx512dq"
    assert message in capsys.readouterr().err


def test_the_peak_is_labelled_with_the_tier_it_was_measured_at(monkeypatch):
    class FakeExtension:
        def fma_peak_gflops(self, threads, iterations):
            return 100.0

    monkeypatch.setattr(_ext, "extension", lambda: FakeExtension())
    for tier in ("avx2", "avx512"):
        monkeypatch.setattr(_ext, "cpu_isa", lambda: tier)
        assert machine.peak_flops(torch.device("cpu"), torch.float32) == (100e9, f"FMA peak ({tier}, measured)")
    # A CPU that runs no tier is measured with a GEMM, and labelled so, not as some tier.
    monkeypatch.setattr(_ext, "cpu_isa", lambda: None)
    flops, label = machine.peak_flops(torch.device("cpu"), torch.float32)
    assert flops > 1e9 and label == "fp32 GEMM peak (torch.mm 2048, measured)"


def test_openvino_answers_like_eager():
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'fastresnet[peers]')")
    model = build_model("resnet18")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected, ref64 = model(x), reference64(model, x)
        run = peers.build("openvino", model, torch.float32, torch.device("cpu"), x)
        first, second = run(x), run(x)
    assert isinstance(first, torch.Tensor) and first.shape == (2, 1000) and first.dtype == torch.float32
    assert answer_error(first, expected, ref64, torch.float32, "openvino") is None
    assert torch.equal(first, second)  # and the second call did not overwrite the first's output
    with pytest.raises(peers.Unavailable, match="CPU in float32 and bfloat16"):
        peers.build("openvino", model, torch.float16, torch.device("cpu"), x.half())


def test_openvino_runs_bfloat16_from_the_float32_model():
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'fastresnet[peers]')")
    model, x = build_model("resnet18"), torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        ref64, eager = reference64(model, x), model.bfloat16()(x.bfloat16())
        out = peers.build("openvino", model, torch.bfloat16, torch.device("cpu"), x.bfloat16())(x.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 1000)
    assert answer_error(out, eager, ref64, torch.bfloat16, "openvino") is None
    assert peers.openvino_default_precision() in ("f32", "bf16", "f16")


def test_onnxruntime_in_bfloat16_is_unavailable_with_the_reason():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'fastresnet[peers]')")
    model, x = build_model("resnet18"), torch.randn(1, 3, 32, 32)
    with pytest.raises(peers.Unavailable, match="ONNX Runtime's CPU provider has no bfloat16 convolution"):
        peers.build("onnxruntime", model, torch.bfloat16, torch.device("cpu"), x.bfloat16())


def test_a_bfloat16_bench_names_its_peak_and_openvinos_own_precision(tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'fastresnet[peers]')")
    rows, report = run_bench(tmp_path, "--dtype", "bfloat16", "--batch-sizes", "1", "--backends", "eager,openvino")
    assert {r["backend"] for r in rows if r["metric"] == "latency_ms"} == {"eager", "openvino"}
    default = peers.openvino_default_precision()
    assert (
        f"- OpenVINO's own default precision on this CPU: {default} (its INFERENCE_PRECISION_HINT when none is "
        "given); the openvino candidate ran with the hint bf16"
    ) in report
    has_bf16_dot = not _ext.extension().bf16_dot_unsupported_reason()
    if has_bf16_dot and _ext.cpu_features()["amx_bf16"]:  # AMX: no ceiling that the peers respect
        assert "- bf16 peak not measured: this CPU has AMX" in report and "percent_of_peak" not in {r["metric"] for r in rows}
    else:
        assert ("- bf16 dot peak (" in report) == has_bf16_dot and ("- FMA peak (" in report) != has_bf16_dot


def test_verify_on_random_and_real_data(tmp_path):
    argv = ["verify", "--models", "resnet18", "--image-size", "32", "--digits-steps", "40", "--device", "cpu",
            "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert [r["data"] for r in rows] == ["random", "digits"]
    assert all(r["passed"] and r["top1_agreement"] == 1.0 for r in rows)
    digits = rows[1]
    assert digits["eager_accuracy"] == digits["fastresnet_accuracy"] > 0.5  # it learned something real
    # In float32 eager is the float32 model (agreement 1 by definition): fastresnet must match it.
    assert digits["eager_agreement_with_fp32"] == digits["fastresnet_agreement_with_fp32"] == 1.0
    assert "| resnet18 (digits) | cpp-cpu (auto) | float32 | digits |" in (tmp_path / "verify.md").read_text()


@pytest.fixture
def recorded_compiles(monkeypatch):
    """torch.compile with dynamo's eager backend (no Inductor: fast), recording each call's
    mode and whether the graph dynamo traced had a dynamic (symbolic) batch."""
    real_compile = torch.compile
    calls = []

    def fake_compile(model, mode=None, dynamic=None, **kwargs):
        call = {"mode": mode, "dynamic": dynamic, "symbolic_batch": []}
        calls.append(call)

        def backend(graph_module, example_inputs):
            # A dynamic batch shows as a symbolic size on the graph's inputs.
            values = [n.meta.get("example_value") for n in graph_module.graph.nodes if n.op == "placeholder"]
            sizes = [s for v in values if isinstance(v, torch.Tensor) for s in v.shape]
            call["symbolic_batch"].append(any(isinstance(v, torch.SymInt) for v in values + sizes))
            return graph_module.forward

        return real_compile(model, backend=backend, dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


def test_torch_compile_modes_are_candidates_outside_the_default_set():
    assert {"torch-compile-max-autotune", "torch-compile-reduce-overhead"} <= set(peers.candidate_names())
    assert not any(name.startswith("torch-compile-") for name in cli.default_candidates(torch.device("cpu"), torch.float32))


def test_torch_compile_modes_on_cuda(recorded_compiles):
    # What would be compiled on a GPU; nothing here touches one (the model is never called).
    model = torch.nn.Conv2d(3, 4, 3)
    for mode in (None, "max-autotune", "reduce-overhead"):
        peers.torch_compile(model, torch.device("cuda"), mode)
    assert [(c["mode"], c["dynamic"]) for c in recorded_compiles] == [
        ("max-autotune", False), ("max-autotune", False), ("reduce-overhead", False)
    ]  # fmt: skip


def test_each_batch_compiles_for_its_own_static_shape(tmp_path, recorded_compiles):
    rows, report = run_bench(
        tmp_path, "--backends", "eager,torch-compile,torch-compile-max-autotune,torch-compile-reduce-overhead"
    )
    assert [(c["mode"], c["dynamic"]) for c in recorded_compiles] == [(None, False), ("max-autotune", False)] * 2
    # No batch size ran a graph traced with a symbolic batch (a recompile of the previous one).
    assert [c["symbolic_batch"] for c in recorded_compiles] == [[False]] * 4
    latency = {(r["backend"], r["batch"]) for r in rows if r["metric"] == "latency_ms"}
    assert latency == {(b, n) for b in ("eager", "torch-compile", "torch-compile-max-autotune") for n in (1, 2)}
    (reason,) = {r["note"] for r in rows if r["backend"] == "torch-compile-reduce-overhead"}
    assert reason == "torch.compile mode reduce-overhead replays CUDA graphs: CUDA only"
    assert "| torch-compile-reduce-overhead | unavailable |" in report
