"""The ``tndiagram`` command: check, show, compile, differentiate, rewrite and draw diagram files."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .autodiff import jvp, vjp
from .bind import bind
from .errors import RewriteError, TNError
from .inspect import describe
from .ir import Network
from .lower import Program, load
from .runtime import compile as compile_network

__all__ = ["main", "build_parser"]


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, separator, sizes = text.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"invalid --shape {text!r}: expected NAME=SIZES such as x=8,3,32,32")
    try:
        shape = tuple(int(s) for s in sizes.split(",") if s.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --shape {text!r}: sizes must be integers separated by commas"
        ) from None
    if any(s < 0 for s in shape):
        raise argparse.ArgumentTypeError(f"invalid --shape {text!r}: sizes must not be negative")
    return name, shape


def _parse_setting(text: str) -> tuple[str, Any]:
    name, separator, value = text.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"invalid --set {text!r}: expected NAME=VALUE such as stride=2")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        # A bare word such as same or valid is a string.
        parsed = value
    return name, parsed


def _select(program: Program, name: str | None) -> Network:
    if name is None:
        if len(program) == 1:
            return next(iter(program.values()))
        raise TNError(
            f"{program.file} defines {len(program)} networks ({', '.join(program)}): choose one with --network"
        )
    if name not in program:
        raise TNError(f"no network named {name!r} in {program.file}; it defines: {', '.join(program) or 'none'}")
    return program[name]


def _add_binding_options(parser: argparse.ArgumentParser, network_help: str, shape_required: bool) -> None:
    parser.add_argument("--network", metavar="NAME", help=network_help)
    parser.add_argument(
        "--shape",
        metavar="NAME=SIZES",
        action="append",
        type=_parse_shape,
        default=[],
        required=shape_required,
        help=(
            "the shape of operand NAME as comma-separated sizes, such as x=8,3,32,32; repeat for"
            " each operand. An optional operand without --shape is left out"
        ),
    )
    parser.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        type=_parse_setting,
        default=[],
        help=(
            "set hyper-parameter NAME to VALUE, read as a Python literal such as stride=2 or"
            " padding=(1,2); a bare word is a string, as in padding=same. Repeat for each"
            " hyper-parameter"
        ),
    )


def _shapes(network: Network, arguments: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """Return the --shape values by operand, raising for a name the network lacks."""
    shapes = dict(arguments.shape)
    for name in shapes:
        if name not in network.operand_names:
            raise TNError(
                f"--shape names {name!r}, which is not an operand of network {network.name!r}"
                f" (operands: {', '.join(network.operand_names)})"
            )
    return shapes


def _command_check(arguments: argparse.Namespace) -> int:
    program = load(arguments.file)
    print(f"{arguments.file}: {len(program)} network(s) valid: {', '.join(program)}")
    return 0


def _command_show(arguments: argparse.Namespace) -> int:
    program = load(arguments.file)
    networks = [_select(program, arguments.network)] if arguments.network or arguments.shape else list(program.values())
    reports = []
    for network in networks:
        bound = plan = None
        if arguments.shape:
            function = compile_network(network, shapes=_shapes(network, arguments), **dict(arguments.set))
            bound, plan = function.bound, function.plan
        elif arguments.set:
            bind(network, dict(arguments.set), {})
        reports.append(describe(network, bound, plan, dict(arguments.set)))
    print("\n\n".join(reports))
    return 0


def _command_compile(arguments: argparse.Namespace) -> int:
    program = load(arguments.file)
    network = _select(program, arguments.network)
    function = compile_network(network, shapes=_shapes(network, arguments), **dict(arguments.set))
    if arguments.output in (None, "-"):
        sys.stdout.write(function.source)
    else:
        Path(arguments.output).write_text(function.source, encoding="utf-8")
        print(f"wrote {arguments.output}: function {function.function_name}", file=sys.stderr)
    return 0


def _bound_for(arguments: argparse.Namespace, network: Network):
    if not arguments.shape:
        raise TNError(f"{arguments.command} needs the operand shapes: give --shape NAME=SIZES for each operand")
    return bind(network, dict(arguments.set), dict(arguments.shape))


def _command_rewrite(arguments: argparse.Namespace) -> int:
    from .rewrites import simplify

    network = _select(load(arguments.file), arguments.network)
    trace = simplify(_bound_for(arguments, network), arguments.disable)
    if arguments.trace:
        print(trace)
        print()
    print(trace.final.network)
    return 0


def _command_draw(arguments: argparse.Namespace) -> int:
    from .draw import render
    from .rewrites import simplify

    network = _select(load(arguments.file), arguments.network)
    if arguments.rewritten:
        network = simplify(_bound_for(arguments, network)).final.network
    path = render(network, arguments.output)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _command_grad(arguments: argparse.Namespace) -> int:
    program = load(arguments.file)
    network = _select(program, arguments.network)
    derive = vjp if arguments.mode == "vjp" else jvp
    text = str(derive(network, arguments.wrt)) + "\n"
    if arguments.compile:
        text = _derivative_module(network, arguments, text)
    elif arguments.shape or arguments.set:
        raise TNError("--shape and --set take effect only with --compile")
    if arguments.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(arguments.output).write_text(text, encoding="utf-8")
        print(f"wrote {arguments.output}", file=sys.stderr)
    return 0


def _derivative_module(network: Network, arguments: argparse.Namespace, diagram: str) -> str:
    """Compile the derivative for the shapes of the original operands and
    return the module, with the derived diagram as its leading comment."""
    if not arguments.shape:
        raise TNError("grad --compile needs the shapes of the network's operands: give --shape NAME=SIZES for each")
    shapes = _shapes(network, arguments)
    if arguments.wrt not in shapes:
        raise TNError(f"grad --compile needs the shape of {arguments.wrt!r}: give --shape {arguments.wrt}=SIZES")
    forward = compile_network(network, shapes=shapes, **dict(arguments.set))
    specialization = forward.specialize(**shapes)
    derivative = specialization.derivatives.function(arguments.mode, arguments.wrt)
    if derivative is None:
        raise RewriteError(
            f"the {arguments.mode.upper()} of {arguments.wrt!r} is zero for these operands: every term"
            " that contains it needs an optional operand that is not given"
        )
    # The cotangent has the output's shape, the tangent the operand's.
    derived_shapes = {name: shape for name, shape in shapes.items() if name in derivative.network.operand_names}
    extra = derivative.network.operands[-1].name
    bound = specialization.bound
    derived_shapes[extra] = (
        bound.shape_of(bound.network.output) if arguments.mode == "vjp" else shapes[arguments.wrt]
    )
    source = derivative.specialize(**derived_shapes).source
    comment = "".join(f"# {line}".rstrip() + "\n" for line in diagram.splitlines())
    return comment + source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tndiagram",
        description="Compile tensor-network diagram files (.tn) to PyTorch functions.",
        epilog="Run 'tndiagram COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"tndiagram {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="parse a diagram file and report errors",
        description=(
            "Parse FILE and check every network in it. The exit status is 0 if the file is valid,"
            " and 1 if it is not, with the error printed as file:line:column, the source line and a caret."
        ),
    )
    check.add_argument("file", metavar="FILE", help="the diagram file to check")
    check.set_defaults(handler=_command_check)

    show = commands.add_parser(
        "show",
        help="print indices, sizes, terms and the planned cost",
        description=(
            "Print each network's indices with their symbolic sizes, its tensors and terms; with"
            " --shape, also the planned contraction path, its FLOPs and largest intermediate."
        ),
    )
    show.add_argument("file", metavar="FILE", help="the diagram file to show")
    _add_binding_options(
        show,
        network_help="the network to show (default: every network; needed with --shape when FILE defines several)",
        shape_required=False,
    )
    show.set_defaults(handler=_command_show)

    compile_command = commands.add_parser(
        "compile",
        help="write the generated PyTorch code as a module",
        description=(
            "Compile one network for the given operand shapes and write a standalone Python"
            " module that imports only torch."
        ),
    )
    compile_command.add_argument("file", metavar="FILE", help="the diagram file to compile")
    _add_binding_options(
        compile_command,
        network_help="the network to compile; needed when FILE defines several",
        shape_required=True,
    )
    compile_command.add_argument(
        "-o", "--output", metavar="OUT.py", help="the file to write the module to (default: standard output)"
    )
    compile_command.set_defaults(handler=_command_compile)

    rewrite = commands.add_parser(
        "rewrite",
        help="simplify a network for given shapes and print the result",
        description=(
            "Bind one network to the given operand shapes, run the rewrite pipeline and print the"
            " rewritten network; with --trace, first each firing with its planned cost."
        ),
    )
    rewrite.add_argument("file", metavar="FILE", help="the diagram file to read")
    _add_binding_options(
        rewrite,
        network_help="the network to rewrite; needed when FILE defines several",
        shape_required=True,
    )
    rewrite.add_argument("--trace", action="store_true", help="print each pass that fired and the cost before and after")
    rewrite.add_argument(
        "--disable", metavar="PASS", action="append", default=[], help="a rewrite pass to skip; repeat for several"
    )
    rewrite.set_defaults(handler=_command_rewrite)

    draw = commands.add_parser(
        "draw",
        help="draw a network as a tensor diagram (SVG or PNG)",
        description=(
            "Draw one network with Graphviz: tensors as nodes, indices as labelled edges, hyper-edges"
            " as dots, output indices as loose legs. --rewritten draws it after the rewrite"
            " pipeline, which needs --shape."
        ),
    )
    draw.add_argument("file", metavar="FILE", help="the diagram file to read")
    _add_binding_options(
        draw,
        network_help="the network to draw; needed when FILE defines several",
        shape_required=False,
    )
    draw.add_argument("--rewritten", action="store_true", help="draw the network after the rewrite pipeline")
    draw.add_argument("-o", "--output", metavar="OUT", required=True, help="the image to write, ending in .svg or .png")
    draw.set_defaults(handler=_command_draw)

    grad = commands.add_parser(
        "grad",
        help="print the VJP or JVP network of an operand",
        description=(
            "Derive the VJP (vector-Jacobian product) or JVP (Jacobian-vector product) network of"
            " one network with respect to one of its operands and print it as diagram text. With"
            " --compile, print the generated module for the given operand shapes instead, with the"
            " derived diagram as its leading comment."
        ),
    )
    grad.add_argument("file", metavar="FILE", help="the diagram file that defines the network")
    _add_binding_options(
        grad,
        network_help="the network to differentiate; needed when FILE defines several",
        shape_required=False,
    )
    grad.add_argument("--wrt", metavar="OPERAND", required=True, help="the operand to differentiate by")
    grad.add_argument(
        "--mode",
        choices=("vjp", "jvp"),
        default="vjp",
        help="vjp: the gradient of the operand for a cotangent of the output (default);"
        " jvp: the output's tangent for a tangent of the operand",
    )
    grad.add_argument(
        "--compile",
        action="store_true",
        help="compile the derivative; --shape then gives the shapes of the original network's operands",
    )
    grad.add_argument(
        "-o", "--output", metavar="OUT", help="the file to write the diagram or module to (default: standard output)"
    )
    grad.set_defaults(handler=_command_grad)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 success, 1 diagram error, 2 usage error)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except TNError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # Reading FILE and writing --output both end here, so the message names the path only.
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as error:
        print(f"error: {arguments.file}: not UTF-8 text ({error.reason} at byte {error.start})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
