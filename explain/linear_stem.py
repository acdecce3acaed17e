"""The affine start of a model's graph, which integrated gradients need to cross only once.

Integrated gradients averages the model's gradient at points ``b + a (x - b)`` of a straight
path. The first operators of most image models (input normalisation, the first convolution,
batch norm in eval mode) are affine: they carry that path to the straight path
``h(b) + a (h(x) - h(b))`` in their output, and their chain rule is one fixed linear map ``J^T``
wherever it is taken. So ``sum_i w_i J^T g_i = J^T (sum_i w_i g_i)``: the gradients can be
taken at the stem's output and summed there, and the stem's backward pass runs once per update
instead of once per step. On DenseNet-121 the stem is a 7 x 7 convolution at full resolution
and its batch norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

import torch
from torch.fx import Graph, GraphModule, Node

from explain.in_place import value_graph

aten = torch.ops.aten

#: Operators affine in their first argument (whatever the other arguments are).
AFFINE_IN_FIRST = {aten.conv2d.default, aten.batch_norm.default, aten.div.Tensor, aten.clone.default}
#: Operators affine in either argument when the other does not depend on the input.
AFFINE_IN_EITHER = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor}


@dataclass(frozen=True)
class SplitModel:
    """A model as ``rest(stem(x))``, where ``stem`` is affine and holds a convolution."""

    stem: GraphModule
    rest: GraphModule


def _live(graph: Graph) -> set[Node]:
    """Nodes the output depends on; the exporter's shape checks are not among them."""
    live: set[Node] = set()
    pending = [node for node in graph.nodes if node.op == "output"]
    while pending:
        node = pending.pop()
        if node not in live:
            live.add(node)
            pending.extend(node.all_input_nodes)
    return live


def _affine_in(node: Node, value: Node) -> bool:
    """Whether ``node`` is affine in ``value``, its only operand that depends on the input."""
    if node.op != "call_function" or node.kwargs.get("alpha", 1) != 1:
        return False
    positions = [k for k, arg in enumerate(node.args) if arg is value]
    if len(positions) != 1 or value in node.kwargs.values():
        return False
    if node.target is aten.batch_norm.default:
        return positions == [0] and not node.args[5]  # eval mode: a fixed scale and shift
    if node.target in AFFINE_IN_FIRST:
        return positions == [0]
    return node.target in AFFINE_IN_EITHER


def _copy(module: GraphModule, nodes: list[Node], start: Node, end: Node) -> GraphModule:
    """The ``nodes`` (in graph order) as a module from ``start``'s value to ``end``'s."""
    graph = Graph()
    env = {start: graph.placeholder("x")}
    for node in nodes:
        env[node] = graph.node_copy(node, lambda arg: env[arg])
    graph.output(env[end])
    graph.eliminate_dead_code()
    return GraphModule(module, graph)


#: Cuts already made, per loaded module: cutting DenseNet-121 takes about 50 ms.
_cuts: WeakKeyDictionary[torch.nn.Module, SplitModel | None] = WeakKeyDictionary()


def split_linear_stem(module: torch.nn.Module) -> SplitModel | None:
    """The model cut after its affine start, or ``None`` where it has none worth cutting.

    The stem must hold a convolution (crossing a pointwise normalisation once saves nothing)
    and the graph must have one input and one output. The cut is made in the module's graph of
    values (:func:`~explain.in_place.value_graph`): the rest must not overwrite its input, which
    is the leaf integrated gradients differentiates by, and a write that cannot be rewritten
    out of place may have no user, so that the cut would drop it as dead code. A module
    without a graph of values is not cut.
    """
    if module not in _cuts:
        graph = value_graph(module)
        _cuts[module] = _cut(graph) if graph is not None else None
    return _cuts[module]


def _cut(module: GraphModule) -> SplitModel | None:
    live = _live(module.graph)
    nodes = [node for node in module.graph.nodes if node in live]
    inputs = [node for node in nodes if node.op == "placeholder"]
    output = next(node for node in nodes if node.op == "output")
    results = output.args[0]
    if isinstance(results, (tuple, list)):
        results = results[0] if len(results) == 1 else None
    if len(inputs) != 1 or not isinstance(results, Node) or any(n.op == "call_module" for n in nodes):
        return None
    chain, value = [], inputs[0]
    while True:
        users = [user for user in value.users if user in live]
        if len(users) != 1 or not _affine_in(users[0], value):
            break
        value = users[0]
        chain.append(value)
    if not any(node.target is aten.conv2d.default for node in chain) or results in chain:
        return None
    varies = {inputs[0]}
    for node in nodes:
        if any(arg in varies for arg in node.all_input_nodes):
            varies.add(node)
    inner = [node for node in nodes if node.op not in ("placeholder", "output")]
    stem = [node for node in inner if node not in varies or node in chain]
    rest = [node for node in inner if node not in chain]
    return SplitModel(stem=_copy(module, stem, inputs[0], value), rest=_copy(module, rest, value, results))
