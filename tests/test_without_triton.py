"""fastresnet where Triton cannot be imported (pyproject installs it on Linux only): the
package imports, optimize() runs on another backend, available_backends() says why Triton
cannot run, and `fastresnet bench` writes its reports, with Triton's version recorded as absent."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter in which `import triton` fails as if it were not installed:
# sys.modules["triton"] = None makes `import triton` (and `import triton.anything`) raise
# ModuleNotFoundError and importlib.util.find_spec("triton") return None, as for a missing
# package; set before torch is imported, so torch sees no Triton either.
SCRIPT = r"""
import json, sys
sys.modules["triton"] = None

import torch
import torchvision

import fastresnet
from fastresnet.bench import cli
from fastresnet.bench.models import set_realistic_batchnorm_
from fastresnet.numerics import compare_to_reference

out_dir = sys.argv[1]
facts = {"fastresnet_file": fastresnet.__file__}
status = {s.name: s for s in fastresnet.available_backends("cpu")}["triton"]
facts["triton_available"], facts["triton_reasons"] = status.available, list(status.reasons)

model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
model = set_realistic_batchnorm_(model, torch.randn(4, 3, 32, 32)).eval()
fast = fastresnet.optimize(model)
x = torch.randn(2, 3, 32, 32)
with torch.inference_mode():
    result = compare_to_reference(fast(x), model(x), model.double()(x.double()), torch.float32)
facts["backend"], facts["model_ok"] = fastresnet.explain(fast).info.backend, result.ok
try:
    fastresnet.optimize(model.float(), backend="triton")
    facts["explicit_triton"] = "no error"
except RuntimeError as error:
    facts["explicit_triton"] = str(error)

argv = ["bench", "--models", "resnet18", "--image-size", "32", "--batch-sizes", "1", "--repeats", "2",
        "--warmup", "1", "--backends", "eager,fastresnet", "--device", "cpu", "--out", out_dir]
facts["bench_exit"] = cli.main(argv)
facts["triton_module"] = repr(sys.modules.get("triton", "absent"))  # nothing imported it after all
print(json.dumps(facts))
"""


def test_fastresnet_and_its_bench_work_without_triton(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # a user's machine
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(facts["fastresnet_file"]).resolve().is_relative_to(ROOT)
    assert facts["triton_available"] is False
    assert any(r.startswith("triton cannot be imported (") for r in facts["triton_reasons"]), facts["triton_reasons"]
    assert facts["backend"] in ("cpp-cpu", "reference") and facts["model_ok"]
    assert "backend 'triton' cannot run on cpu" in facts["explicit_triton"]
    assert "triton cannot be imported" in facts["explicit_triton"]
    assert facts["bench_exit"] == 0 and facts["triton_module"] == "None"

    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["versions"]["triton"] for r in rows} == {None}
    latency = {r["backend"]: r["status"] for r in rows if r["metric"] == "latency_ms"}
    assert latency == {"eager": "ok", "fastresnet": "ok"}
    assert "triton None" in (tmp_path / "report.md").read_text()
