"""Autograd for compiled networks: backward and forward mode run compiled
VJP and JVP networks.

A call that may be differentiated goes through :class:`NetworkFunction`, a
``torch.autograd.Function``. Its backward evaluates the VJP network of each
operand that needs a gradient, and its ``jvp`` the JVP networks of the operands
that have tangents. The derived networks are compiled like any other network,
each with its own contraction path, once per shape signature of the forward
call, and autograd never traces through the forward einsums. The derived
functions are compiled networks themselves, so they are differentiable in turn:
double backward and gradients of JVPs work the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.autograd.forward_ad

from .autodiff import jvp as jvp_network
from .autodiff import occurs_in, primal_size_values
from .autodiff import vjp as vjp_network
from .bind import BoundNetwork
from .ir import Network

if TYPE_CHECKING:
    from .runtime import CompiledFunction

__all__ = ["Derivatives", "NetworkFunction", "ReverseNetworkFunction", "autograd_function"]

DERIVATIVE_RULES: dict[str, Callable[[Network, str], Network]] = {"vjp": vjp_network, "jvp": jvp_network}


def autograd_function(tensors: Sequence[torch.Tensor]) -> "type[ReverseNetworkFunction] | None":
    """Return the autograd.Function class that a call with these operands must
    go through, or None when nothing can differentiate it, so that the
    generated code runs directly without the cost of ``Function.apply``.

    Under torch.compile, dynamo rejects a Function with a custom ``jvp`` when
    an operand requires grad, and mis-binds a ``forward`` that takes ``*args``
    when none does, so traced calls take :class:`ReverseNetworkFunction` or the
    generated code.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return ReverseNetworkFunction if torch.compiler.is_compiling() else NetworkFunction
    if torch.compiler.is_compiling():
        return None
    # NOTE: _current_level is private to torch.autograd.forward_ad (torch 2.x);
    # it is -1 outside every dual_level() block.
    if torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0:
        return NetworkFunction
    return None


class Derivatives:
    """The VJP and JVP functions of one specialization of a compiled network,
    compiled on first use.

    ``names`` lists the operands present in the forward call, in the order in
    which the generated function takes them.
    """

    def __init__(self, owner: "CompiledFunction", bound: BoundNetwork, forward: Callable, names: tuple[str, ...]):
        self.owner = owner
        self.bound = bound
        self.generated = forward
        self.names = names
        self.output_shape = bound.shape_of(bound.network.output)
        self._functions: dict[tuple[str, str], "CompiledFunction | None"] = {}

    def function(self, mode: str, operand: str) -> "CompiledFunction | None":
        """Return the compiled VJP or JVP function of ``operand``, or None where
        the derivative is zero because no present term contains the operand."""
        key = (mode, operand)
        if key not in self._functions:
            self._functions[key] = self._compile(mode, operand)
        return self._functions[key]

    def _compile(self, mode: str, operand: str) -> "CompiledFunction | None":
        from .runtime import CompiledFunction

        if torch.compiler.is_compiling():
            # A RuntimeError, because dynamo cannot construct a TNError while it traces.
            raise RuntimeError(
                f"torch.compile cannot trace the derivation of the {mode.upper()} network of {operand!r}:"
                f" run one {'backward' if mode == 'vjp' else 'forward-mode'} pass outside torch.compile first"
            )
        if operand not in self.names:
            raise KeyError(f"operand {operand!r} is not present in this specialization (present: {', '.join(self.names)})")
        # bound.network lacks the terms of absent optional operands.
        if not occurs_in(self.bound.network, operand):
            return None
        owner = self.owner
        derived = owner.derived_network(mode, operand)
        hyper = dict(owner.hyper_parameters)
        hyper.update(primal_size_values(derived, self.bound.sizes, hyper, self.bound.spatial_dimensions))
        return CompiledFunction(
            derived,
            hyper,
            owner.strategy,
            owner.origin,
            simplify=owner.simplify,
            disable=owner.disable,
            native=owner.native,
        )

    def evaluate(
        self, mode: str, operand: str, tensors: Sequence[torch.Tensor], direction: torch.Tensor
    ) -> torch.Tensor | None:
        """Evaluate the derivative of ``operand``, or return None where it is zero.

        For ``mode='vjp'``, ``direction`` is the output's cotangent and the
        result the operand's gradient. For ``'jvp'``, it is the operand's
        tangent and the result the output's tangent.
        """
        function = self.function(mode, operand)
        if function is None:
            return None
        accepted = set(function.network.operand_names)
        arguments = {name: tensor for name, tensor in zip(self.names, tensors) if name in accepted}
        # The derived networks take the cotangent or tangent last.
        arguments[function.network.operands[-1].name] = direction
        return function(**arguments)

class ReverseNetworkFunction(torch.autograd.Function):
    """Reverse mode only: apply with a :class:`Derivatives` object and the
    present operands, in order."""

    @staticmethod
    def forward(derivatives: Derivatives, *tensors: torch.Tensor) -> torch.Tensor:
        result = derivatives.generated(*tensors)
        # A network such as y[i] = x returns its operand, which autograd can
        # save for backward only as a view.
        if any(result is tensor for tensor in tensors):
            return result.view_as(result)
        return result

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        derivatives, *tensors = inputs
        ctx.derivatives = derivatives
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx: Any, cotangent: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        derivatives: Derivatives = ctx.derivatives
        tensors = ctx.saved_tensors
        gradients: list[torch.Tensor | None] = [None]
        for name, needed in zip(derivatives.names, ctx.needs_input_grad[1:]):
            gradients.append(derivatives.evaluate("vjp", name, tensors, cotangent) if needed else None)
        return tuple(gradients)


class NetworkFunction(ReverseNetworkFunction):
    """Reverse and forward mode, and torch.func transforms (vmap through the
    generated rule)."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ReverseNetworkFunction.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[1:])

    @staticmethod
    def jvp(ctx: Any, _: Any, *tangents: torch.Tensor | None) -> torch.Tensor:
        derivatives: Derivatives = ctx.derivatives
        tensors = ctx.saved_tensors
        result = None
        for name, tangent in zip(derivatives.names, tangents):
            if tangent is None:
                continue
            contribution = derivatives.evaluate("jvp", name, tensors, tangent)
            if contribution is not None:
                result = contribution if result is None else result + contribution
        if result is None:
            return tensors[0].new_zeros(derivatives.output_shape)
        return result
