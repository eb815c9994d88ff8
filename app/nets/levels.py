"""Nest an ONNX graph's outputs in levels that ONNX Runtime runs only when a request needs them.

ONNX Runtime runs every node of a graph whatever outputs a caller asks for, but of an ``If`` node only the
branch its condition picks. :func:`nest_levels` moves the nodes that only some outputs need into nested
``If`` branches, deepest level outermost: level 1 holds what its outputs need beyond the always-run head,
level 2 (inside level 1's branch) what its outputs need beyond that, and so on. A graph input ``depth``
(int64 scalar; 0 runs everything) picks the levels: level j runs when ``depth <= position_j``; a level that does
not run returns its outputs with an empty batch axis. Nodes computed from constants alone stay at the top,
where ONNX Runtime folds them when it loads the graph, unless one level alone needs them: then they move
into that level's branch, so that its convolutions get kernels of their own graph (see :func:`_constant_owners`).

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


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """The names ``node`` reads: its inputs and, for an ``If``, the names of enclosing graphs its branches use."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            names.extend(_outer_names(attr.g))
    return names


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    """Names ``graph`` (a branch) reads that it does not define itself."""
    defined = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    used = []
    for node in graph.node:
        used.extend(n for n in node_inputs(node) if n not in defined)
        defined.update(node.output)
    return used


def _static(graph: onnx.GraphProto) -> set[str]:
    """Names computed from initializers and constants alone (ONNX Runtime folds them at load time)."""
    static = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(i in static for i in node_inputs(node)):
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
        stack.extend(producer[v] for v in node_inputs(graph.node[i]) if v in producer)
    return seen


def _constant_owners(graph: onnx.GraphProto, owner: dict[int, int], static: set[str]) -> dict[int, int]:
    """The level of each constant-only node that one level alone consumes (directly or through other such nodes).

    Such a node moves into its level's branch, where ONNX Runtime folds it into an initializer of that
    branch when it loads the graph. Its kernels must be: ONNX Runtime's NCHWc layout (its fastest CPU
    convolution) takes only a kernel that is an initializer of the convolution's own graph, not one of
    an enclosing graph.
    """
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node_inputs(node):
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}
    used: dict[int, set[int]] = {}  # constant-only node -> the levels that consume it
    for i in range(len(graph.node) - 1, -1, -1):
        node = graph.node[i]
        if i in owner or not all(o in static for o in node.output):
            continue
        levels: set[int] = set()
        for out in node.output:
            if out in outputs:
                levels.add(0)
            for c in consumers.get(out, []):
                levels |= used.get(c, {owner.get(c, 0)})
        used[i] = levels
    return {i: next(iter(lv)) for i, lv in used.items() if len(lv) == 1 and 0 not in lv}


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
    owner.update(_constant_owners(graph, owner, static))
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


def select_outputs(graph: onnx.GraphProto, selector: str, choices: list[list[str]]) -> None:
    """Compute the outputs ``choices[k]`` only when the int64 scalar input ``selector`` is k (else: empty batch axis).

    The nodes that only choice k's outputs need (copied into each choice that needs them) move into the
    ``then`` branch of an ``If (selector == k)``; what the other outputs need stays where it is. A selector
    that matches no choice computes none of them. The graph gains the input ``selector`` if it lacks it.
    Each choice's outputs need their full shapes (but a dynamic batch axis) in the graph's outputs.
    """
    static = _static(graph)
    chosen = {o for c in choices for o in c}
    kept_needs = _ancestors(graph, [o.name for o in graph.output if o.name not in chosen], static)
    if any(o in chosen for i in kept_needs for o in graph.node[i].output):
        raise ValueError("an output of a choice is needed by an output outside the choices")
    infos = {o.name: o for o in graph.output}
    nodes = list(graph.node)
    produced = {o for n in nodes for o in n.output}
    moved: set[int] = set()
    conditions, branches = [], []
    for k, outs in enumerate(choices):
        need = sorted(_ancestors(graph, outs, static) - kept_needs)
        moved.update(need)
        inside = {o for i in need for o in nodes[i].output}
        body = []
        for i in need:
            copy = onnx.NodeProto()
            copy.CopyFrom(nodes[i])
            for j, name in enumerate(copy.input):
                if name in inside:
                    copy.input[j] = f"{name}@{k}"
            for j, name in enumerate(copy.output):
                copy.output[j] = f"{name}@{k}"
            body.append(copy)
        then = helper.make_graph(
            body,
            f"choice{k}",
            [],
            [helper.make_tensor_value_info(f"{o}@{k}", infos[o].type.tensor_type.elem_type, None) for o in outs],
        )
        empty = [_empty(f"{o}#none{k}", infos[o]) for o in outs]
        skipped = [
            helper.make_tensor_value_info(n.output[0], infos[o].type.tensor_type.elem_type, None)
            for n, o in zip(empty, outs, strict=True)
        ]
        if f"{selector}:is{k}" not in produced:  # the conditions, once per selector, ahead of everything
            value = helper.make_tensor(f"{selector}:is{k}:value", TensorProto.INT64, [], [k])
            conditions += [
                helper.make_node("Constant", [], [f"{selector}:is{k}:k"], value=value),
                helper.make_node("Equal", [selector, f"{selector}:is{k}:k"], [f"{selector}:is{k}"]),
            ]
        branches.append(
            helper.make_node(
                "If",
                [f"{selector}:is{k}"],
                outs,
                then_branch=then,
                else_branch=helper.make_graph(empty, f"choice{k}_skipped", [], skipped),
            )
        )
    rest = [n for i, n in enumerate(nodes) if i not in moved]
    reads = {name for n in branches for name in node_inputs(n)}
    last = max((i for i, n in enumerate(rest) if reads & set(n.output)), default=-1)
    del graph.node[:]
    graph.node.extend([*conditions, *rest[: last + 1], *branches, *rest[last + 1 :]])
    if selector not in {i.name for i in graph.input}:
        graph.input.append(helper.make_tensor_value_info(selector, TensorProto.INT64, []))
