"""torch.compile(fullgraph=True) and torch.export see straight through an optimized model."""

import torch

import fastresnet


def _fastresnet_ops(graph) -> set[str]:
    return {str(n.target) for n in graph.nodes if n.op == "call_function" and "fastresnet" in str(n.target)}


def test_fullgraph_compile_matches_eager(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet)
    x = torch.randn(2, 3, 32, 32)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True)  # fullgraph: any graph break raises
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), fast(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(compiled(x), tiny_resnet(x), atol=1e-4, rtol=1e-4)


def test_compile_reports_bad_input_like_eager(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="eager")
    try:
        compiled(torch.randn(2, 5, 32, 32))
    except Exception as error:  # dynamo may wrap it; the message must survive
        assert "expected 3 input channels" in str(error)
    else:
        raise AssertionError("a 5-channel input was accepted")


def test_export_runs_and_contains_the_fused_ops(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet)
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(fast, (x,))
    ops = _fastresnet_ops(exported.graph)
    assert ops == {
        "fastresnet.cpp_conv2d_bias_act.default",
        "fastresnet.cpp_max_pool2d.default",
        "fastresnet.cpp_global_avg_pool.default",
    }
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), fast(x), atol=1e-6, rtol=1e-6)


def test_export_with_a_dynamic_batch(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(fast, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), fast(x), atol=1e-6, rtol=1e-6)
