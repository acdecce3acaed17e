"""Incremental inference for occlusion (Nakandala et al., SIGMOD 2019, "Krypton").

An occluded copy of an image differs from the image only inside one window, and a convolution
spreads that difference only as far as its kernel reaches. So every layer's activations are
computed once for the unoccluded image, and for each occluded copy only the box of each layer
that the window can reach is recomputed, from the same layer's input cropped around it. Early
layers, where the box is small and the maps are large, are where a CNN spends most of its work.

The exported graph (``torch.export``'s ATen operators) is walked node by node, so this applies to
any model made of common layers: convolutions, pooling, batch norm, pointwise activations and
arithmetic, channel concatenation. Each activation of a batch of copies is held as a *patch*: the
base activation everywhere except one box per copy. Where the box has grown to most of the map,
or an operator is not one of those, the patch is made whole (the base with each copy's box
pasted in) and the rest of the graph runs as usual on the batch. The answer is the same as
running the whole model on each copy, to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Node
from torch.fx.node import map_aggregate

from explain.in_place import value_graph

aten = torch.ops.aten

#: A box that covers more than this share of its map is cheaper to compute whole.
WHOLE_SHARE = 0.7
#: Copies per batch once every copy is whole, on a CPU (DenseNet-121 here: 44 ms a copy in
#: batches of 8, 67 ms in batches of 32).
WHOLE_CHUNK_ON_CPU = 8


@dataclass(frozen=True, eq=False)
class Patch:
    """A batch of activations equal to ``base`` except inside one box per copy.

    ``values`` is ``(copies, channels, height, width)``: each copy's box, all boxes one size;
    ``tops`` and ``lefts`` place them, each box lying wholly inside the map.
    """

    base: torch.Tensor
    values: torch.Tensor
    tops: np.ndarray
    lefts: np.ndarray

    @property
    def copies(self) -> int:
        return len(self.values)

    @property
    def size(self) -> tuple[int, int]:
        return self.values.shape[-2], self.values.shape[-1]

    def share(self) -> float:
        """How much of the map the box covers."""
        h, w = self.size
        return h * w / (self.base.shape[-2] * self.base.shape[-1])

    def whole(self) -> torch.Tensor:
        """Every copy in full: the base with each copy's box pasted in."""
        return self.crop(np.zeros_like(self.tops), np.zeros_like(self.lefts), *self.base.shape[-2:])

    def crop(self, tops: np.ndarray, lefts: np.ndarray, height: int, width: int,
             pad: int = 0, fill: float = 0.0) -> torch.Tensor:
        """Each copy's ``height x width`` box at ``tops, lefts``, in a map padded by ``pad``.

        The copy's own box is pasted over the base wherever the two boxes meet.
        """
        base = self.base if pad == 0 else F.pad(self.base, (pad, pad, pad, pad), value=fill)
        if height == base.shape[-2] and width == base.shape[-1]:
            out = base.expand(self.copies, -1, -1, -1).clone()
        elif (tops == tops[0]).all() and (lefts == lefts[0]).all():
            out = base[:, :, tops[0]:tops[0] + height, lefts[0]:lefts[0] + width].expand(self.copies, -1, -1, -1).clone()
        else:
            out = torch.cat([base[:, :, t:t + height, l:l + width] for t, l in zip(tops, lefts)])
        h, w = self.size
        rows = self.tops + pad - tops
        cols = self.lefts + pad - lefts
        if (rows == rows[0]).all() and (cols == cols[0]).all() and _inside(rows[0], h, height) and _inside(cols[0], w, width):
            out[:, :, rows[0]:rows[0] + h, cols[0]:cols[0] + w] = self.values
            return out
        for k, (r, c) in enumerate(zip(rows, cols)):
            r0, r1, c0, c1 = max(r, 0), min(r + h, height), max(c, 0), min(c + w, width)
            if r0 < r1 and c0 < c1:
                out[k, :, r0:r1, c0:c1] = self.values[k, :, r0 - r:r1 - r, c0 - c:c1 - c]
        return out


#: A batch of boxes: their values ``(copies, channels, height, width)``, tops and lefts.
Boxes = tuple[torch.Tensor, np.ndarray, np.ndarray]


def _inside(start: int, length: int, limit: int) -> bool:
    return start >= 0 and start + length <= limit


def fit(starts: np.ndarray, stops: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """One box length for every copy, covering each ``[start, stop)``, moved back inside ``limit``."""
    length = int(max((stops - starts).max(), 1))
    return np.minimum(starts, limit - length).astype(np.int64), length


@dataclass(frozen=True)
class Window:
    """A sliding-window operator's geometry along both axes (convolution or pooling)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def reach(self, axis: int) -> int:
        return (self.kernel[axis] - 1) * self.dilation[axis] + 1

    def outputs_hit(self, starts: np.ndarray, stops: np.ndarray, axis: int, size_out: int) -> tuple[np.ndarray, int]:
        """The box of outputs whose inputs overlap ``[start, stop)``, one length for all copies."""
        s, p = self.stride[axis], self.padding[axis]
        first = np.maximum(0, -((self.reach(axis) - 1 - starts - p) // s))
        last = np.minimum(size_out, (stops - 1 + p) // s + 1)
        return fit(first, last, size_out)

    def inputs_needed(self, length: int, axis: int) -> int:
        """Padded input length that ``length`` outputs read."""
        return (length - 1) * self.stride[axis] + self.reach(axis)


def _pair(value: Any, default: int | None = None) -> tuple[int, int]:
    if value is None or (isinstance(value, Sequence) and len(value) == 0):
        return (default, default)  # type: ignore[return-value]
    if isinstance(value, Sequence):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _windowed(patch: Patch, window: Window, out_size: tuple[int, int], fill: float,
              compute: Callable[[torch.Tensor], torch.Tensor]) -> Boxes | None:
    """Run a sliding-window operator on the boxes its outputs need; None when it is not worth it."""
    tops, height = window.outputs_hit(patch.tops, patch.tops + patch.size[0], 0, out_size[0])
    lefts, width = window.outputs_hit(patch.lefts, patch.lefts + patch.size[1], 1, out_size[1])
    if height * width > WHOLE_SHARE * out_size[0] * out_size[1]:
        return None
    pad = window.padding
    if pad[0] != pad[1]:
        return None
    crops = patch.crop(tops * window.stride[0], lefts * window.stride[1],
                       window.inputs_needed(height, 0), window.inputs_needed(width, 1), pad[0], fill)
    return compute(crops), tops, lefts


def _conv(patch: Patch, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Boxes | None:
    if isinstance(padding, str):
        return None
    window = Window(tuple(weight.shape[-2:]), _pair(stride), _pair(padding), _pair(dilation))
    return _windowed(patch, window, _conv_size(patch.base, window), 0.0,
                     lambda crops: F.conv2d(crops, weight, bias, window.stride, 0, window.dilation, groups))


def _conv_size(x: torch.Tensor, window: Window) -> tuple[int, int]:
    return tuple((x.shape[-2 + a] + 2 * window.padding[a] - window.reach(a)) // window.stride[a] + 1
                 for a in (0, 1))  # type: ignore[return-value]


def _max_pool(patch: Patch, kernel, stride=(), padding=0, dilation=1, ceil_mode=False) -> Boxes | None:
    if ceil_mode:
        return None
    kernel = _pair(kernel)
    window = Window(kernel, _pair(stride, kernel[0]) if stride else kernel, _pair(padding), _pair(dilation))
    return _windowed(patch, window, _conv_size(patch.base, window), -math.inf,
                     lambda crops: F.max_pool2d(crops, window.kernel, window.stride, 0, window.dilation))


def _avg_pool(patch: Patch, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None) -> Boxes | None:
    kernel = _pair(kernel)
    padding = _pair(padding)
    if ceil_mode or (any(padding) and not count_include_pad):
        return None
    window = Window(kernel, _pair(stride) if stride else kernel, padding, (1, 1))
    return _windowed(patch, window, _conv_size(patch.base, window), 0.0,
                     lambda crops: F.avg_pool2d(crops, kernel, window.stride, 0, divisor_override=divisor_override))


#: Operators that act on each value alone (given per-channel or scalar other operands).
#: In-place forms are not among them: the graph of values has none (:meth:`IncrementalModel.supports`).
POINTWISE = {
    aten.relu.default, aten.hardtanh.default, aten.silu.default, aten.gelu.default, aten.sigmoid.default,
    aten.tanh.default, aten.leaky_relu.default, aten.elu.default, aten.hardswish.default, aten.hardsigmoid.default,
    aten.clamp.default, aten.clone.default, aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor,
}

WINDOWED: dict[Any, Callable[..., Boxes | None]] = {
    aten.conv2d.default: _conv, aten.max_pool2d.default: _max_pool, aten.avg_pool2d.default: _avg_pool,
}


def _spatially_constant(value: Any) -> bool:
    """An operand that is the same at every pixel: a number or a per-channel tensor."""
    if not isinstance(value, torch.Tensor):
        return True
    return value.dim() == 0 or (value.dim() >= 2 and value.shape[-2:] == (1, 1))


def _union(patches: Sequence[Patch]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One box per copy holding every patch's box: tops, lefts, height, width."""
    height_limit, width_limit = patches[0].base.shape[-2:]
    tops, height = fit(np.min([p.tops for p in patches], 0), np.max([p.tops + p.size[0] for p in patches], 0),
                       height_limit)
    lefts, width = fit(np.min([p.lefts for p in patches], 0), np.max([p.lefts + p.size[1] for p in patches], 0),
                       width_limit)
    return tops, lefts, height, width


def _aligned(value: Any, tops: np.ndarray, lefts: np.ndarray, height: int, width: int) -> Any:
    """A patch's values in the given boxes; a constant map cropped to them; anything else as is."""
    if isinstance(value, Patch):
        if value.size == (height, width) and (value.tops == tops).all() and (value.lefts == lefts).all():
            return value.values
        return value.crop(tops, lefts, height, width)
    if isinstance(value, torch.Tensor) and value.dim() == 4 and not _spatially_constant(value):
        return torch.cat([value[:, :, t:t + height, l:l + width] for t, l in zip(tops, lefts)])
    return value


def _on_patches(target: Any, args: tuple) -> Boxes | None:
    """``target`` applied to patches alone, where it is local and known; None otherwise.

    Every operand that varies between copies is a patch (the caller checks); the others are the
    same for all copies.
    """
    first = args[0]
    if target in WINDOWED and isinstance(first, Patch) and len(first.values.shape) == 4:
        return WINDOWED[target](*args)
    if target is aten.batch_norm.default and isinstance(first, Patch) and not args[5]:
        return target(first.values, *args[1:]), first.tops, first.lefts  # running statistics: per pixel
    if target is aten.cat.default:
        tensors, dim = args[0], (args[1] if len(args) > 1 else 0)
        patches = [t for t in tensors if isinstance(t, Patch)]
        if dim not in (1, -3) or any(t.dim() != 4 for t in tensors if isinstance(t, torch.Tensor)):
            return None
        tops, lefts, height, width = _union(patches)
        return torch.cat([_aligned(t, tops, lefts, height, width) for t in tensors], dim=1), tops, lefts
    if target in POINTWISE:
        if not all(isinstance(a, Patch) or _spatially_constant(a) for a in args):
            return None
        tops, lefts, height, width = _union([a for a in args if isinstance(a, Patch)])
        return target(*(_aligned(a, tops, lefts, height, width) for a in args)), tops, lefts
    return None


class IncrementalModel:
    """A model's graph with every activation of one image kept, for scoring its occluded copies."""

    def __init__(self, module: GraphModule, image: torch.Tensor) -> None:
        graph = value_graph(module)
        if graph is None:
            raise ValueError("incremental inference needs an exported graph whose in-place writes can be rewritten")
        # The graph of values: the base activations kept for the image must not be overwritten.
        self.module = graph
        # Nodes nobody uses (the exporter's shape-guard check) have nothing to contribute.
        self.nodes = [n for n in graph.graph.nodes if n.users or n.op in ("placeholder", "output")]
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ValueError("incremental inference needs a graph with one input")
        self.input = inputs[0]
        self.varies = self._input_dependent()
        self.last_use = self._last_uses()
        output = next(n for n in self.nodes if n.op == "output").args[0]
        self.single_output = isinstance(output, Node) or (isinstance(output, (tuple, list)) and len(output) == 1)
        self.chunk = WHOLE_CHUNK_ON_CPU if image.device.type == "cpu" else None
        self.base = self._run_whole(image[None])

    @classmethod
    def supports(cls, module: torch.nn.Module) -> bool:
        """Exported graphs whose first operators on the input are ones it knows.

        It runs the graph of values (:func:`~explain.in_place.value_graph`), where no operator
        overwrites another's result: the base activations kept for the unoccluded image must
        be intact when the boxes are pasted into them. A graph without one is refused.
        """
        graph = value_graph(module)
        if graph is None:
            return False
        users = [n for n in graph.graph.nodes if n.op == "placeholder"]
        return len(users) == 1 and any(u.target in WINDOWED or u.target in POINTWISE for u in users[0].users)

    def _input_dependent(self) -> set[Node]:
        varies = {self.input}
        for node in self.nodes:
            if any(arg in varies for arg in node.all_input_nodes):
                varies.add(node)
        return varies

    def _last_uses(self) -> dict[Node, list[Node]]:
        """For each node, the values no later node reads: freed as soon as it has run.

        Holding every activation of a batch to the end would need fresh memory for each
        operator, and the page faults of fresh memory cost as much as the arithmetic.
        """
        last: dict[Node, Node] = {}
        for node in self.nodes:
            for arg in node.all_input_nodes:
                last[arg] = node
        freed: dict[Node, list[Node]] = {}
        for value, user in last.items():
            freed.setdefault(user, []).append(value)
        return freed

    def _value(self, node: Node, env: dict[Node, Any]) -> Any:
        if node.op == "get_attr":
            target = self.module
            for part in str(node.target).split("."):
                target = getattr(target, part)
            return target
        args = map_aggregate(node.args, lambda a: env[a] if isinstance(a, Node) else a)
        kwargs = map_aggregate(node.kwargs, lambda a: env[a] if isinstance(a, Node) else a)
        return node.target(*args, **kwargs)

    def _run_whole(self, x: torch.Tensor) -> dict[Node, Any]:
        env: dict[Node, Any] = {self.input: x}
        for node in self.nodes:
            if node.op in ("get_attr", "call_function"):
                env[node] = self._value(node, env)
            elif node.op != "placeholder" and node.op != "output":
                raise ValueError(f"incremental inference does not run {node.op} nodes")
        return env

    def __call__(self, images: Patch) -> torch.Tensor:
        """The model's output for each copy of the image that ``images`` describes."""
        return self._run(0, {self.input: images}, images.copies)

    def _run(self, start: int, env: dict[Node, Any], copies: int) -> Any:
        """The graph from node ``start`` on, with the values in ``env``."""
        live_patches = sum(isinstance(value, Patch) for value in env.values())
        for index in range(start, len(self.nodes)):
            node = self.nodes[index]
            if node.op == "output":
                outputs = self._whole(map_aggregate(node.args[0], lambda a: env[a] if isinstance(a, Node) else a))
                return outputs[0] if isinstance(outputs, (tuple, list)) and len(outputs) == 1 else outputs
            if node.op == "placeholder":
                continue
            if node not in self.varies:
                env[node] = self.base[node]
                continue
            env[node] = value = self._step(node, env)
            live_patches += isinstance(value, Patch)
            for done in self.last_use.get(node, ()):
                live_patches -= isinstance(env.pop(done), Patch)
            if live_patches == 0 and self.chunk and copies > self.chunk and self._splittable(env, copies):
                return self._in_chunks(index + 1, env, copies)
        raise ValueError("the graph has no output")

    def _splittable(self, env: dict[Node, Any], copies: int) -> bool:
        return self.single_output and all(
            isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == copies
            for node, value in env.items() if node in self.varies)

    def _in_chunks(self, start: int, env: dict[Node, Any], copies: int) -> torch.Tensor:
        """The rest of the graph a few copies at a time, once every copy is whole.

        The boxes pay for a large batch (Python's cost per operator is shared by more copies);
        whole maps on a CPU run faster in small batches, whose activations stay in the caches.
        """
        outputs = []
        for first in range(0, copies, self.chunk):
            part = {node: value[first:first + self.chunk] if node in self.varies else value
                    for node, value in env.items()}
            outputs.append(self._run(start, part, min(self.chunk, copies - first)))
        return torch.cat(outputs)

    def _step(self, node: Node, env: dict[Node, Any]) -> Any:
        """One operator on patches where it knows how, on whole copies otherwise."""
        args = map_aggregate(node.args, lambda a: env[a] if isinstance(a, Node) else a)
        kwargs = map_aggregate(node.kwargs, lambda a: env[a] if isinstance(a, Node) else a)
        if not kwargs and all(isinstance(env[a], Patch) for a in node.all_input_nodes if a in self.varies):
            boxes = _on_patches(node.target, args)
            if boxes is not None:
                patch = Patch(self.base[node], *boxes)
                return patch if patch.share() <= WHOLE_SHARE else patch.whole()
        return node.target(*self._whole(args), **self._whole(kwargs))

    def _whole(self, value: Any) -> Any:
        return map_aggregate(value, lambda v: v.whole() if isinstance(v, Patch) else v)


def occluded_copies(image: torch.Tensor, hidden: torch.Tensor, windows: Sequence[tuple[slice, slice]],
                    size: tuple[int, int]) -> Patch:
    """Copies of ``image`` ``(channels, height, width)`` with each window showing ``hidden``.

    Every box is ``size`` (a window cut off at the edge gets a box moved back inside the image).
    """
    height, width = image.shape[-2:]
    tops = np.array([min(rows.start, height - size[0]) for rows, _ in windows], dtype=np.int64)
    lefts = np.array([min(cols.start, width - size[1]) for _, cols in windows], dtype=np.int64)
    values = torch.stack([image[:, t:t + size[0], l:l + size[1]] for t, l in zip(tops, lefts)])
    for k, (rows, cols) in enumerate(windows):
        values[k, :, rows.start - tops[k]:rows.stop - tops[k], cols.start - lefts[k]:cols.stop - lefts[k]] = (
            hidden[:, rows, cols])
    return Patch(image[None], values, tops, lefts)
