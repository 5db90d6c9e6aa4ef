"""The Triton backend: implicit-GEMM conv with a fused epilogue (conv), pooling and the
standalone add + ReLU (pool), tile configs and autotuning (configs), the registration of
the ``triton_*`` ops (register), and the ahead-of-time GPU compile check (aot).

Nothing here is imported by ``import fastresnet``: the backend loads it when chosen, so
the package imports without Triton and without a GPU.
"""
