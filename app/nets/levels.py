"""Nest an ONNX graph's outputs in levels that ONNX Runtime runs only when a request needs them.

ONNX Runtime runs every node of a graph whatever outputs a caller asks for, but of an ``If`` node only the
branch its condition picks. :func:`nest_levels` moves the nodes that only some outputs need into nested
``If`` branches, deepest level outermost: level 1 holds what its outputs need beyond the always-run head,
level 2 (inside level 1's branch) what its outputs need beyond that, and so on. A graph input ``depth``
(int64 scalar; 0 runs everything) picks the levels: level j runs when ``depth <= position_j``; a level that does
not run returns its outputs with an empty batch axis. Nodes computed from constants alone stay at the top,
where ONNX Runtime folds them when it loads the graph.

The explain graph (:mod:`app.nets.explain`) uses it so that a class activation map at a deep layer costs
the forward pass and the backward down to that layer, not the backward down to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

DEPTH_INPUT = "depth"


@dataclass
class Level:
    """Outputs that run together, and the largest ``depth`` that still runs them."""

    position: int
    outputs: list[str]


def _static(graph: onnx.GraphProto) -> set[str]:
    """Names computed from initializers and constants alone (ONNX Runtime folds them at load time)."""
    static = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(i in static for i in node.input if i):
            static.update(node.output)
    return static


def _ancestors(graph: onnx.GraphProto, outputs: list[str], static: set[str]) -> set[int]:
    """Indices of the non-constant nodes that ``outputs`` depend on."""
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output}
    seen: set[int] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in seen or all(o in static for o in graph.node[i].output):
            continue
        seen.add(i)
        stack.extend(producer[v] for v in graph.node[i].input if v in producer)
    return seen


def _empty(name: str, like: onnx.ValueInfoProto) -> onnx.NodeProto:
    """A Constant node of ``like``'s type and shape with a batch axis of 0 (no elements)."""
    dims = [d.dim_value for d in like.type.tensor_type.shape.dim]
    dtype = like.type.tensor_type.elem_type
    value = helper.make_tensor(f"{name}:value", dtype, [0, *dims[1:]], [])
    return helper.make_node("Constant", [], [name], value=value)


def nest_levels(graph: onnx.GraphProto, levels: list[Level]) -> None:
    """Move what only ``levels`` (deepest first) need into nested ``If`` branches picked by the input ``depth``.

    Every graph output named in no level is in the head, computed on every run. Each level's outputs keep
    their names at the top; their full shapes (but a dynamic batch axis) must be in the graph's outputs.
    """
    static = _static(graph)
    head = [o.name for o in graph.output if all(o.name not in lv.outputs for lv in levels)]
    owner = dict.fromkeys(_ancestors(graph, head, static), 0)  # node index -> level (0: the head)
    for j, level in enumerate(levels, 1):
        for i in _ancestors(graph, level.outputs, static):
            owner.setdefault(i, j)
    infos = {o.name: o for o in graph.output}
    moved_info = {v.name: v for v in graph.value_info}
    nodes = list(graph.node)
    top = [n for i, n in enumerate(nodes) if owner.get(i, 0) == 0]

    def scoped(name: str, scope: int) -> str:
        return name if scope == 0 else f"{name}#{scope}"

    conditions = []
    for j, level in enumerate(levels, 1):
        bound = helper.make_tensor(f"{DEPTH_INPUT}:le{j}", TensorProto.INT64, [], [level.position])
        conditions.append(helper.make_node("Constant", [], [bound.name], value=bound))
        conditions.append(helper.make_node("LessOrEqual", [DEPTH_INPUT, bound.name], [f"{DEPTH_INPUT}:run{j}"]))

    inner: onnx.NodeProto | None = None  # the If of the level below the one being built
    for j in range(len(levels), 0, -1):
        own = levels[j - 1].outputs
        deeper = [o for lv in levels[j:] for o in lv.outputs]
        body = []
        for i, node in enumerate(nodes):
            if owner.get(i) == j:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                for k, out in enumerate(copy.output):
                    if out in own:
                        copy.output[k] = scoped(out, j)
                body.append(copy)
        if inner is not None:
            body.append(inner)
        names = [*own, *deeper]
        then = helper.make_graph(
            body,
            f"level{j}",
            [],
            [helper.make_tensor_value_info(scoped(o, j), infos[o].type.tensor_type.elem_type, None) for o in names],
            value_info=[moved_info[o] for n in body if n.op_type != "If" for o in n.output if o in moved_info],
        )
        empty = [_empty(f"{o}#empty{j}", infos[o]) for o in names]
        skipped = [
            helper.make_tensor_value_info(n.output[0], infos[o].type.tensor_type.elem_type, None)
            for n, o in zip(empty, names, strict=True)
        ]
        otherwise = helper.make_graph(empty, f"level{j}_skipped", [], skipped)
        inner = helper.make_node(
            "If", [f"{DEPTH_INPUT}:run{j}"], [scoped(o, j - 1) for o in names], then_branch=then, else_branch=otherwise
        )
    kept = {o for n in top for o in n.output}
    del graph.node[:]
    graph.node.extend([*conditions, *top, *([inner] if inner is not None else [])])
    info = [v for v in moved_info.values() if v.name in kept or v.name in {i.name for i in graph.input}]
    del graph.value_info[:]
    graph.value_info.extend(info)
    graph.input.append(helper.make_tensor_value_info(DEPTH_INPUT, TensorProto.INT64, []))
