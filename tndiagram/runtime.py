"""Compiled networks: callables that specialize a network once per shape signature.

A :class:`CompiledFunction` binds, plans and emits code the first time it is called with
a combination of operand shapes (and of present optional operands), caches the
resulting :class:`Specialization`, and afterwards only checks dtypes and
devices before it calls the generated function. Calls that autograd, torch.func
or torch.compile may differentiate go through
:class:`tndiagram.autograd.NetworkFunction`, whose derivatives run compiled
VJP and JVP networks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from . import codegen, native
from .autograd import DERIVATIVE_RULES, Derivatives, autograd_function
from .bind import BoundNetwork, bind, resolve_hyper_parameters
from .errors import ShapeError
from .ir import Network
from .plan import ContractionPlan, plan
from .rewrites import Trace, resolve_disabled, simplify as simplify_bound

__all__ = ["Specialization", "CompiledFunction", "compile"]


@dataclass(frozen=True)
class Specialization:
    """The code generated for one shape signature."""

    bound: BoundNetwork
    plan: ContractionPlan
    source: str
    function_name: str
    function: Callable[..., torch.Tensor]
    derivatives: Derivatives
    trace: Trace | None = None


class CompiledFunction:
    """A network compiled to PyTorch: call it with tensors, positionally in the
    declared operand order or by name.

    ``source``, ``plan`` and ``bound`` describe the most recent specialization;
    :meth:`specialize` builds one for given shapes without running it.
    """

    def __init__(
        self,
        network: Network,
        hyper_parameters: Mapping[str, Any] | None = None,
        strategy: str | None = None,
        origin: str | None = None,
        simplify: bool = True,
        disable: Iterable[str] = (),
        native: bool = True,
    ):
        self.network = network
        self.simplify = simplify
        self.disable = resolve_disabled(disable)
        self.native = native
        self.hyper_parameters = resolve_hyper_parameters(network, hyper_parameters or {})
        self.strategy = strategy
        self.origin = origin
        self._names = network.operand_names
        self._positions = {name: number for number, name in enumerate(self._names)}
        self._optional = tuple(o.optional for o in network.operands)
        self._specializations: dict[tuple, Specialization] = {}
        self._last: Specialization | None = None
        self._derived_networks: dict[tuple[str, str], Network] = {}
        self.__name__ = network.name
        self.__doc__ = f"Compiled tndiagram network {network.name}({', '.join(self._names)})."

    # -- calling ----------------------------------------------------------

    def __call__(self, *args: torch.Tensor | None, **kwargs: torch.Tensor | None) -> torch.Tensor:
        tensors = self._arrange(args, kwargs)
        # Before specializing, so that a call with a wrong dtype leaves no code behind.
        self._check_dtype_and_device(tensors)
        key = tuple(None if t is None else t.shape for t in tensors)
        specialization = self._specializations.get(key)
        if specialization is None:
            specialization = self._specialize(key)
        # Assigning only on a change keeps a torch.compile trace of backward
        # free of mutations, which dynamo rejects inside an autograd.Function.
        if specialization is not self._last:
            self._last = specialization
        present = [t for t in tensors if t is not None]
        function_class = autograd_function(present)
        if function_class is not None:
            return function_class.apply(specialization.derivatives, *present)
        return specialization.function(*present)

    def _arrange(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[torch.Tensor | None]:
        if len(args) > len(self._names):
            raise TypeError(
                f"{self.network.name}() takes {len(self._names)} operands"
                f" ({', '.join(self._names)}), got {len(args)}"
            )
        tensors: list[Any] = list(args) + [None] * (len(self._names) - len(args))
        given = [True] * len(args) + [False] * (len(self._names) - len(args))
        for name, value in kwargs.items():
            position = self._positions.get(name)
            if position is None:
                raise TypeError(
                    f"{self.network.name}() has no operand {name!r} (operands: {', '.join(self._names)})"
                )
            if given[position]:
                raise TypeError(f"{self.network.name}() got operand {name!r} twice")
            tensors[position] = value
            given[position] = True
        for number, tensor in enumerate(tensors):
            if tensor is None:
                if not self._optional[number]:
                    raise TypeError(f"{self.network.name}() is missing operand {self._names[number]!r}")
            elif not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"operand {self._names[number]!r} must be a torch.Tensor, got {type(tensor).__name__}"
                )
        return tensors

    def _check_dtype_and_device(self, tensors: Sequence[torch.Tensor | None]) -> None:
        reference = None
        for name, tensor in zip(self._names, tensors):
            if tensor is None:
                continue
            span = self.network.operand(name).span  # the caret goes under the declaration
            if reference is None:
                reference = (name, tensor)
                if not (tensor.is_floating_point() or tensor.is_complex()):
                    raise ShapeError(
                        f"operand {name!r} has dtype {tensor.dtype}, expected a floating-point or complex dtype",
                        span,
                    )
                continue
            first_name, first = reference
            if tensor.dtype != first.dtype:
                raise ShapeError(
                    f"operand {name!r} has dtype {tensor.dtype}, expected {first.dtype} (the dtype of {first_name!r})",
                    span,
                )
            if tensor.device != first.device:
                raise ShapeError(
                    f"operand {name!r} is on device {tensor.device}, expected {first.device}"
                    f" (the device of {first_name!r})",
                    span,
                )

    # -- specializing -----------------------------------------------------

    def specialize(self, **shapes: Sequence[int]) -> Specialization:
        """Build (or fetch) the code for operands of the given shapes, by name."""
        for name in shapes:
            if name not in self._positions:
                raise TypeError(f"{self.network.name} has no operand {name!r} (operands: {', '.join(self._names)})")
        key = tuple(torch.Size(shapes[name]) if name in shapes else None for name in self._names)
        specialization = self._specializations.get(key) or self._specialize(key)
        self._last = specialization
        return specialization

    def _specialize(self, key: tuple[torch.Size | None, ...]) -> Specialization:
        shapes = {name: tuple(shape) for name, shape in zip(self._names, key) if shape is not None}
        if torch.compiler.is_compiling():
            # A RuntimeError, because dynamo cannot construct a TNError while it traces.
            raise RuntimeError(
                f"torch.compile cannot trace the specialization of {self.network.name} for shapes {shapes}:"
                " call the function once outside torch.compile first, or pass shapes= to tndiagram.compile"
            )
        bound = original = bind(self.network, self.hyper_parameters, shapes)
        trace = None
        if self.simplify:
            bound, trace = self._simplify(bound)
        contraction_plan = plan(bound, self.strategy)
        name = codegen.function_name(bound)
        source = codegen.emit(bound, contraction_plan, name, self.origin, self.native)
        function = codegen.load_source(source, name)
        present = tuple(operand for operand, shape in zip(self._names, key) if shape is not None)
        # Derivatives are taken of the network as written, so they read the unsimplified binding.
        derivatives = Derivatives(self, original, function, present)
        specialization = Specialization(bound, contraction_plan, source, name, function, derivatives, trace)
        self._specializations[key] = specialization
        return specialization

    def _simplify(self, bound: BoundNetwork) -> tuple[BoundNetwork, Trace | None]:
        """Run the rewrite pipeline on the terms that no native kernel computes.

        A term that is exactly a convolution (or one of its VJPs) runs faster in
        torch's kernel than in any rewritten einsum, so it stays as it is.
        """
        kept = [t for t in bound.network.terms if self.native and native.match_term(t, bound.sizes)]
        if not kept:
            trace = simplify_bound(bound, self.disable, strategy=self.strategy)
            return trace.final, trace
        others = tuple(t for t in bound.network.terms if t not in kept)
        if not others:
            return bound, None
        rest = dataclasses.replace(bound, network=bound.network.replace(terms=others))
        trace = simplify_bound(rest, self.disable, strategy=self.strategy)
        if trace.final.network.output != bound.network.output:
            # The kept terms are written against the original output axes.
            return bound, None
        # The native terms first: the code then reads 'y = conv2d(...)', 'y = y + bias'.
        network = trace.final.network.replace(terms=tuple(kept) + trace.final.network.terms)
        sizes = {**bound.sizes, **trace.final.sizes}
        return dataclasses.replace(trace.final, network=network, sizes=sizes), trace

    def derived_network(self, mode: str, operand: str) -> Network:
        """Return the VJP (``mode='vjp'``) or JVP network of ``operand``, derived once."""
        key = (mode, operand)
        if key not in self._derived_networks:
            if mode not in DERIVATIVE_RULES:
                raise ValueError(f"unknown derivative mode {mode!r}: expected 'vjp' or 'jvp'")
            self._derived_networks[key] = DERIVATIVE_RULES[mode](self.network, operand)
        return self._derived_networks[key]

    # -- inspection -------------------------------------------------------

    def _latest(self) -> Specialization:
        if self._last is None:
            raise RuntimeError(
                f"{self.network.name} has not been specialized yet: call it once, pass shapes= to"
                " tndiagram.compile, or call .specialize(name=shape, ...)"
            )
        return self._last

    @property
    def source(self) -> str:
        """The generated Python source of the most recent specialization."""
        return self._latest().source

    @property
    def function_name(self) -> str:
        """The name of the generated function in :attr:`source`."""
        return self._latest().function_name

    @property
    def plan(self) -> ContractionPlan:
        return self._latest().plan

    @property
    def bound(self) -> BoundNetwork:
        return self._latest().bound

    @property
    def trace(self) -> Trace | None:
        """The rewrites of the most recent specialization (None with ``simplify=False``)."""
        return self._latest().trace

    def __repr__(self) -> str:
        return f"<CompiledFunction {self.network.name}, {len(self._specializations)} specialization(s)>"


def compile(
    network: Network,
    /,
    *,
    shapes: Mapping[str, Sequence[int]] | None = None,
    strategy: str | None = None,
    simplify: bool = True,
    disable: Iterable[str] = (),
    native: bool = True,
    **hyper_parameters: Any,
) -> CompiledFunction:
    """Compile a network to a callable taking torch tensors.

    ``hyper_parameters`` override the network's defaults. With ``shapes`` (a
    mapping from operand names to shapes), the code for those shapes is built
    at once, so ``.source`` is ready before the first call. ``strategy`` names
    an opt_einsum path strategy ('optimal', 'dp', 'greedy', …); the default
    picks 'optimal' for small terms and 'dp' for large ones. ``simplify`` runs
    the rewrite pipeline of :mod:`tndiagram.rewrites` on each bound network;
    ``disable`` names passes to skip, such as ``{"dense"}``.
    With ``native`` (the default), a term that is exactly a convolution, its
    input VJP or its weight VJP runs torch's convolution kernel and is left out
    of the rewrites; ``native=False`` keeps the pure einsum lowering.
    """
    if not isinstance(network, Network):
        raise TypeError(f"tndiagram.compile expects a Network, got {type(network).__name__}")
    function = CompiledFunction(
        network,
        hyper_parameters,
        strategy,
        origin=_origin(network),
        simplify=simplify,
        disable=disable,
        native=native,
    )
    if shapes is not None:
        function.specialize(**shapes)
    return function


def _origin(network: Network) -> str | None:
    return network.span.file if network.span is not None else None
