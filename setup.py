"""Builds the fastresnet._C extension with ninja; everything else is in pyproject.toml.

The CUDA kernels (csrc/cuda) are compiled in when torch is a CUDA build and a CUDA toolkit
is found, whether or not a GPU is visible, for sm_80 and sm_90 unless TORCH_CUDA_ARCH_LIST
says otherwise. FASTRESNET_BUILD_CUDA=0 leaves them out; FASTRESNET_BUILD_EXT=0 skips the
extension altogether (the package then runs on the reference backend, and
available_backends() says why the compiled backends cannot run).
"""

import glob
import os
import shutil

from setuptools import setup


def cuda_toolkit() -> str | None:
    """The CUDA toolkit to build with, or None to build without CUDA."""
    if os.environ.get("FASTRESNET_BUILD_CUDA", "1") == "0":
        return None
    import torch

    if torch.version.cuda is None:
        return None
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "bin", "nvcc")) and os.path.exists(
            os.path.join(home, "include", "cuda_runtime.h")
        ):
            return home
    return None


ext_modules, cmdclass = [], {}
if os.environ.get("FASTRESNET_BUILD_EXT", "1") != "0":
    cuda_home = cuda_toolkit()
    if cuda_home:
        # Read by torch.utils.cpp_extension at import: set both before importing it.
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = ["csrc/fastresnet.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # at::parallel_for is inline OpenMP: without -fopenmp here the CPU kernels would run on
    # one thread. The OpenMP runtime is torch's own libgomp.so.1 (same soname, loaded first).
    # Each CPU tier (csrc/cpu/tier_<isa>.cpp) switches its instruction set on with a
    # #pragma GCC target, not for the whole module, so that the module still imports on any
    # CPU, picks the widest tier that runs there, and says why the others cannot; off x86-64
    # the tier files compile to stubs.
    cxx_flags = ["-O3", "-fopenmp"]
    if cuda_home:
        ext = CUDAExtension(
            "fastresnet._C",
            sources + sorted(glob.glob("csrc/cuda/*.cpp")) + sorted(glob.glob("csrc/cuda/*.cu")),
            define_macros=[("FASTRESNET_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "fastresnet._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
        )
    ext_modules.append(ext)
    cmdclass["build_ext"] = BuildExtension.with_options(use_ninja=True)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
