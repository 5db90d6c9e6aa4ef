"""`fastresnet bench` and `fastresnet verify` end to end, on a tiny image size."""

import json

import pytest
import torch

from fastresnet.bench import cli, peers

ROW_KEYS = {
    "model", "backend", "dtype", "device", "batch", "image_size", "metric", "p20", "p50", "p80",
    "machine", "versions", "timestamp", "status", "note",
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
    assert all(0 < r["p20"] <= r["p50"] <= r["p80"] for r in latency)
    metrics = {r["metric"] for r in rows}
    assert {"ms_per_image", "images_per_s", "gflops_per_s", "percent_of_peak", "speedup_vs_eager"} <= metrics
    eager_speedup = [r["p50"] for r in rows if r["metric"] == "speedup_vs_eager" and r["backend"] == "eager"]
    assert eager_speedup == [1.0, 1.0]
    assert "| fastresnet | " in report and "## resnet18, batch 2" in report
    assert "## Per layer: resnet18, batch 1" in report and "| conv1 | 3->64 7x7/s2" in report
    for png in ("speedup.png", "per_layer_resnet18.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unavailable_backend_is_reported_with_its_reason(tmp_path):
    rows, report = run_bench(tmp_path, "--dtype", "bfloat16", "--backends", "eager,fastresnet-cpp")
    (unavailable,) = {r["note"] for r in rows if r["backend"] == "fastresnet-cpp"}
    assert "the CPU kernels are float32 only" in unavailable
    assert "| fastresnet-cpp | unavailable |" in report


def test_a_failing_or_wrong_backend_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    real_build = peers.build

    def build(name, model, dtype, device, example):
        run = real_build(name, model, dtype, device, example)
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
    assert status[("eager-channels-last", 2)]["note"].startswith("wrong answer: max |out - eager|")
    assert {r["backend"] for r in rows if r["metric"] == "latency_ms"} == {"eager"}
    assert "- fastresnet: failed: RuntimeError: kernel exploded" in report


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "--models", "resnet9"], "unknown model 'resnet9'; valid models are resnet18, resnet34"),
        (["bench", "--backends", "tensorrt"], "unknown backend 'tensorrt'; valid backends are eager, eager-channels-last"),
        (["bench", "--dtype", "int8"], "unknown dtype 'int8'; valid dtypes are float32, float16, bfloat16"),
        (["bench", "--batch-sizes", "1,x"], "expected comma-separated integers"),
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
    assert names[:5] == ["eager", "eager-channels-last", "torch-compile", "onnxruntime", "fastresnet"]
    assert "fastresnet-triton" not in names  # the CPU interpreter is for tests, not for timing
    assert names[5:] == ["fastresnet-reference"]  # fastresnet itself is cpp, auto's choice
    # In bfloat16 auto falls back to the reference backend, and cpp is not offered.
    assert cli.default_candidates(torch.device("cpu"), torch.bfloat16)[4:] == ["fastresnet"]


def test_verify_on_random_and_real_data(tmp_path):
    argv = ["verify", "--models", "resnet18", "--image-size", "32", "--digits-steps", "40", "--device", "cpu",
            "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert [r["data"] for r in rows] == ["random", "digits"]
    assert all(r["passed"] and r["top1_agreement"] == 1.0 for r in rows)
    digits = rows[1]
    assert digits["eager_accuracy"] == digits["fastresnet_accuracy"] > 0.5  # it learned something real
    assert "| resnet18 (digits) | cpp (auto) | float32 | digits |" in (tmp_path / "verify.md").read_text()
