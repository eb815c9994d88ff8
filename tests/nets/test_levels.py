"""The graph passes of app.nets.levels (nested levels by ``depth``, one choice by ``method``) and the ReLU mask.

Hand-built ONNX graphs run in ONNX Runtime against numpy: what a run asks for is computed, what it does not
comes back empty, and kernels only a level needs live in that level (where ONNX Runtime's NCHWc layout takes them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from app.nets.backward_ops import relu_backward
from app.nets.levels import DEPTH_INPUT, Level, nest_levels, select_outputs


def _session(graph: onnx.GraphProto) -> ort.InferenceSession:
    onnx.checker.check_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), full_check=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _out(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 4])


def _graph() -> onnx.GraphProto:
    """x -> a = relu(x); kept = a + 1; choice 0: y0 = 2 * neg(a), choice 1: y1 = neg(a) * neg(a); deep: d = a - 1."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Add", ["a", "one"], ["kept"]),
        helper.make_node("Neg", ["a"], ["n"]),  # needed by both choices: copied into each
        helper.make_node("Mul", ["n", "two"], ["y0"]),
        helper.make_node("Mul", ["n", "n"], ["y1"]),
        helper.make_node("Sub", ["a", "one"], ["deep"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    return helper.make_graph(nodes, "g", [x], [_out(o) for o in ("kept", "y0", "y1", "deep")], [two, one])


def test_select_outputs_computes_the_chosen_outputs_only() -> None:
    graph = _graph()
    select_outputs(graph, "method", [["y0"], ["y1"]])
    select_outputs(graph, "method", [["deep"]])  # a second call: the conditions are not repeated
    assert [n.op_type for n in graph.node].count("Equal") == 2
    sess = _session(graph)
    x = np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32)
    a = np.maximum(x, 0)
    for k in (-1, 0, 1):
        kept, y0, y1, deep = sess.run(None, {"x": x, "method": np.array(k, np.int64)})
        np.testing.assert_array_equal(kept, a + 1)
        assert y0.shape == ((1, 4) if k == 0 else (0, 4)) and y1.shape == ((1, 4) if k == 1 else (0, 4))
        assert deep.shape == ((1, 4) if k == 0 else (0, 4))
        if k == 0:
            np.testing.assert_array_equal(y0, -2 * a)
            np.testing.assert_array_equal(deep, a - 1)
        if k == 1:
            np.testing.assert_array_equal(y1, a * a)


def test_levels_nest_the_choices_and_run_by_depth() -> None:
    """select_outputs, then nest_levels: the If nodes move with the outputs they compute (their reads included)."""
    graph = _graph()
    select_outputs(graph, "method", [["y0"], ["y1"]])
    nest_levels(graph, [Level(2, ["y0", "y1"]), Level(1, ["deep"])])
    assert [n.op_type for n in graph.node if n.op_type == "If"] == ["If"]  # the levels' If; the choices inside
    sess = _session(graph)
    x = np.array([[1.0, -2.0, 3.0, 0.0]], np.float32)
    a = np.maximum(x, 0)
    for depth in (0, 1, 2, 3):
        kept, y0, y1, deep = sess.run(None, {"x": x, "method": np.array(0, np.int64), DEPTH_INPUT: np.array(depth)})
        np.testing.assert_array_equal(kept, a + 1)
        assert y1.shape == (0, 4)
        assert y0.shape[0] == (1 if depth <= 2 else 0) and deep.shape[0] == (1 if depth <= 1 else 0)
        if depth <= 1:
            np.testing.assert_array_equal(deep, a - 1)


def test_constants_only_a_level_needs_move_into_it(tmp_path: Path) -> None:
    """A kernel derived from a weight (here a flip) that one level alone uses becomes an initializer of that level.

    ONNX Runtime's NCHWc convolution takes only a kernel of the convolution's own graph: the optimised level
    holds an NCHWc Conv.
    """
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), "w")
    ints = {
        n: numpy_helper.from_array(np.array(v, np.int64), n)
        for n, v in {"st": [-1, -1], "ax": [2, 3], "b": [-1, -1], "e": [-(2**62), -(2**62)]}.items()
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Slice", ["w", "b", "e", "ax", "st"], ["wf"]),
        helper.make_node("Conv", ["y", "wf"], ["z"], pads=[1, 1, 1, 1]),
    ]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "g",
        [info("x", TensorProto.FLOAT, ["batch", 16, 8, 8])],
        [info("y", TensorProto.FLOAT, ["batch", 16, 8, 8]), info("z", TensorProto.FLOAT, ["batch", 16, 8, 8])],
        [w, *ints.values()],
    )
    nest_levels(graph, [Level(0, ["z"])])
    assert [n.op_type for n in graph.node if n.op_type in ("Slice", "If")] == ["If"]
    branch = next(a.g for a in graph.node[-1].attribute if a.name == "then_branch")
    assert "Slice" in [n.op_type for n in branch.node]
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    y, z = _session(graph).run(None, {"x": x, DEPTH_INPUT: np.array(0)})
    kernel = torch.from_numpy(numpy_helper.to_array(w).copy()).flip(2, 3)
    ref = torch.nn.functional.conv2d(torch.from_numpy(y), kernel, padding=1)
    np.testing.assert_allclose(z, ref.numpy(), rtol=1e-4, atol=1e-4)

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx"))
    top = {(n.domain, n.op_type) for n in optimised.graph.node}
    level = next(a.g for n in optimised.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch")
    if ("com.microsoft.nchwc", "Conv") in top:  # this CPU has the NCHWc kernels: the level's Conv uses them too
        assert ("com.microsoft.nchwc", "Conv") in {(n.domain, n.op_type) for n in level.node}


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
def test_relu_mask_is_exact_in_onnx_runtime(tmp_path: Path) -> None:
    """The HardSigmoid mask keeps the gradient exactly where y > 0, from the smallest float32 up to +inf."""
    y = torch.tensor([[0.0, -0.0, -1.0, 1.4e-45, 1e-40, 1.2e-38, 1e-20, 0.5, 1.0, 3e38, float("inf"), -float("inf")]])
    dy = torch.arange(1.0, 13.0).view(1, -1)
    ref = dy * (y > 0).float()
    assert torch.equal(relu_backward(dy, y), ref)

    class Mask(torch.nn.Module):
        def forward(self, dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return relu_backward(dy, y)

    path = tmp_path / "mask.onnx"
    torch.onnx.export(Mask(), (dy, y), str(path), input_names=["dy", "y"], opset_version=17, dynamo=False)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["HardSigmoid", "HardSigmoid", "Mul"]
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"dy": dy.numpy(), "y": y.numpy()}
    )
    np.testing.assert_array_equal(got, ref.numpy())
