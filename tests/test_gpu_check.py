"""benchmarks/gpu_check.sh, the one-command check for a lent GPU machine, without a GPU: its
arguments, its time budget, a failing step, and a dry run of every step on the CPU (small
shapes, no build), whose summary and reports must come out as they would on the GPU."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
OUT_FILES = {"summary.md", "summary.json", "report.md", "results.json", "parity.md", "logs.tar.gz"}


def run_script(*args, timeout=300, **env):
    # Without the caller's settings for the script (BENCH_DTYPES=..., GPU_CHECK_WORK=...).
    prefixes = ("BENCH_", "PARITY_", "TESTS_", "GPU_CHECK_", "TOTAL_BUDGET_S")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    environment.update(PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=environment
    )  # fmt: skip


def steps(out: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((out / "summary.json").read_text())["steps"]}


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "error: OUTDIR is missing"),
        (["--dry-run"], "error: OUTDIR is missing"),
        (["--frobnicate", "out"], "error: unknown option --frobnicate"),
        (["--steps", "env,tune", "out"], "error: unknown step tune"),
        (["a", "b"], "error: one OUTDIR only"),
    ],
)
def test_bad_arguments_print_the_usage(args, message):
    result = run_script(*args, timeout=30)
    assert result.returncode == 2
    assert "usage: bash benchmarks/gpu_check.sh" in result.stderr and message in result.stderr


def test_steps_that_no_longer_fit_the_budget_are_reported_not_run(tmp_path):
    result = run_script("--dry-run", "--steps", "env,bench", str(tmp_path), timeout=60, TOTAL_BUDGET_S="20")
    assert result.returncode == 0, result.stdout + result.stderr
    status = steps(tmp_path)
    assert status["env"]["status"] == status["bench-float32-b1"]["status"] == "out-of-time"
    assert status["gpu-tests"]["status"] == "skipped" and "not selected" in status["gpu-tests"]["note"]
    assert "- result: INCOMPLETE (out of time)" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_a_failing_step_is_recorded_and_the_next_one_runs(tmp_path):
    # A renamed backend: the env step's name check fails, and the bench still runs (and fails).
    result = run_script(
        "--dry-run", "--steps", "env,bench", str(tmp_path), CPU_CPP_BACKEND="cuda-cpp", BENCH_BATCHES="1"
    )  # fmt: skip
    assert result.returncode == 1
    status = steps(tmp_path)
    assert status["env"]["status"] == "failed" and status["bench-float32-b1"]["status"] == "failed"
    with tarfile.open(tmp_path / "logs.tar.gz") as tar:
        env_log = tar.extractfile("logs/env.log").read().decode()
        bench_log = tar.extractfile("logs/bench-float32-b1.log").read().decode()
    assert "backend 'cuda-cpp' is not one of ['cpp-cpu', 'cpp-cuda', 'onednn', 'reference', 'triton']" in env_log
    assert "unknown backend 'fastresnet-cuda-cpp'" in env_log and "unknown backend 'fastresnet-cuda-cpp'" in bench_log
    assert "- result: NOT OK" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_dry_run_writes_the_summary_and_the_reports(tmp_path):
    out = tmp_path / "out"
    result = run_script("--dry-run", str(out), GPU_CHECK_WORK=str(tmp_path / "work"), BENCH_BATCHES="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == OUT_FILES  # at most 8 files come back from the device
    status = steps(out)
    assert status["build"]["status"] == "skipped"  # a dry run builds only when --steps names build
    for name in ("env", "extension", "gpu-tests", "parity", "bench-float32-b1", "gpu-models"):
        assert status[name]["status"] == "passed", status[name]
        assert 0 < int(status[name]["budget"]) <= 540
    summary = (out / "summary.md").read_text()
    assert "- mode: dry-run; device cpu" in summary and "- result: OK" in summary
    assert "| gpu-tests.xml | 5 | 5 | 0 | 0 | 0 |" in summary
    assert "needs a CUDA GPU" in summary  # benchmarks/test_gpu_models.py skipped, with the reason
    assert "| float32-no-triton | resnet18 | cpp-cpu (auto) | float32 | random |" in summary
    assert "| bench-float32-b1 | " in summary
    rows = json.loads((out / "results.json").read_text())
    latency = {r["backend"] for r in rows if r["metric"] == "latency_ms"}
    assert latency == {"eager", "eager-channels-last", "fastresnet", "fastresnet-cpp-cpu"}
    unavailable = {r["backend"]: r["note"] for r in rows if r["metric"] == "status"}
    assert set(unavailable) == {"fastresnet-triton", "torch-compile-reduce-overhead"}  # not on a CPU
    assert "## resnet18, batch 1" in (out / "report.md").read_text()
    assert "| resnet18 | cpp-cpu (auto) | float32 | random |" in (out / "parity.md").read_text()
    with tarfile.open(out / "logs.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"logs/env.log", "logs/gpu-tests.log", "junit/gpu-tests.xml", "env.json"} <= members
    assert "bench/bench-float32-b1/speedup.png" in members
    assert result.stdout.rstrip().endswith(summary.rstrip())  # the summary is the last thing printed
