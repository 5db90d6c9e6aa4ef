"""Builds the fastresnet._C extension with ninja; everything else is in pyproject.toml.

FASTRESNET_BUILD_EXT=0 skips the extension: the package still works on the reference
backend and available_backends() says why the compiled backends cannot run.
"""

import os

from setuptools import setup

ext_modules, cmdclass = [], {}
if os.environ.get("FASTRESNET_BUILD_EXT", "1") != "0":
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    ext_modules.append(
        CppExtension(
            "fastresnet._C",
            ["csrc/fastresnet.cpp"],
            extra_compile_args={"cxx": ["-O3"]},
        )
    )
    cmdclass["build_ext"] = BuildExtension.with_options(use_ninja=True)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
