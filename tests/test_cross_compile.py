"""The CPU sources build on a CPU that is not x86-64: compiled here for aarch64 with Debian's
cross compiler (compile only; nothing runs). The x86 tier files then compile to nothing, so
the build registers no tier: the extension loads there and the package runs on `reference`,
saying why.
The module entry (csrc/fastresnet.cpp) is left out: it includes this machine's Python headers,
which are not the target's."""

import glob
import shutil
import subprocess
from pathlib import Path

import pytest
from torch.utils.cpp_extension import include_paths

CROSS_COMPILER = shutil.which("aarch64-linux-gnu-g++")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    CROSS_COMPILER is None,
    reason="no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu; .ci/setup installs it)",
)
@pytest.mark.parametrize("source", sorted(glob.glob(str(ROOT / "csrc" / "cpu" / "*.cpp"))), ids=lambda p: Path(p).name)
def test_cpu_sources_compile_for_aarch64(source, tmp_path):
    includes = [f"-I{path}" for path in include_paths()]
    object_file = tmp_path / (Path(source).stem + ".o")
    command = [CROSS_COMPILER, "-std=c++20", "-O1", "-fopenmp", "-c", source, "-o", str(object_file), *includes]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    symbols = subprocess.run(["aarch64-linux-gnu-nm", "-C", str(object_file)], capture_output=True, text=True).stdout
    if Path(source).name.startswith("tier_"):
        # Empty: no kernels, and no registration, so the build has no x86 tier there.
        assert "run_conv" not in symbols and "plan_winograd" not in symbols and "register_tier" not in symbols
