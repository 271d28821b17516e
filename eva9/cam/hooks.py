"""The forward hooks that keep the chosen layers' outputs during one forward pass, and only then."""

from __future__ import annotations

import torch
from torch import nn


class _LayerOutputs:
    """Forward hooks, present only inside a ``with`` block, that keep each named layer's output of that block.

    With ``leaves=True`` (the gradient methods) an output that requires no gradient, as in a frozen model, becomes
    the leaf of a new graph, so that the target score can still be differentiated with respect to it.
    """

    def __init__(self, layers: dict[str, nn.Module], leaves: bool = True) -> None:
        self.layers = layers
        self.leaves = leaves
        self.outputs: dict[str, list] = {name: [] for name in layers}
        self._handles: list = []

    def __enter__(self) -> _LayerOutputs:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._keeper(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def _keeper(self, name: str):
        def keep(module: nn.Module, inputs, output):
            self.outputs[name].append(output)
            frozen = isinstance(output, torch.Tensor) and output.is_floating_point() and not output.requires_grad
            if self.leaves and frozen and torch.is_grad_enabled():
                # A frozen model (no parameter requires grad) builds no graph: make this output the graph's leaf.
                leaf = output.detach().requires_grad_(True)
                self.outputs[name][-1] = leaf
                return leaf
            return None

        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
