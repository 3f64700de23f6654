"""The `pyfrcnn` command line: the engine's own commands (check, draw, time,
solve, plot) and those that plugins register (test, eval, detect, data, ...).

Every command prints a one-line error and exits 1 on bad input; `--debug`
shows the traceback instead.
"""

import argparse
import contextlib
import logging
import signal
import sys
import threading

from . import __version__
from .errors import PyfrcnnError, output_error


def parse_input_shapes(items):
    """['data=1,3,600,1000', 'im_info=1,3'] -> {'data': (1, 3, 600, 1000), ...}"""
    shapes = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise PyfrcnnError(f"--input-shape '{item}': expected NAME=D1,D2,... "
                               "(e.g. data=1,3,600,1000)") from None
    return shapes


def add_net_arguments(parser, shapes=True):
    parser.add_argument("net", help="the net's prototxt file")
    parser.add_argument("--phase", default="TEST", type=str.upper, choices=("TRAIN", "TEST"),
                        help="which layers to keep (include / exclude rules); default TEST")
    parser.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="the NetState level")
    if shapes:
        parser.add_argument("--input-shape", nargs="+", default=[], metavar="BLOB=D1,D2,...",
                            help="override Input shapes, e.g. data=1,3,600,1000 im_info=1,3")


def build_net(args):
    from .net import Net

    return Net(args.net, phase=args.phase, stages=args.stage, level=args.level,
               input_shapes=parse_input_shapes(getattr(args, "input_shape", None)))


def _engine_commands():
    from . import tools
    from .plot import add_plot_arguments, run_plot
    from .solver import add_solve_arguments, run_solve
    from .weights import add_convert_arguments, run_convert

    return {
        "check": (tools.add_check_arguments, tools.run_check,
                  "build a net without data and print its layers, shapes and costs"),
        "draw": (tools.add_draw_arguments, tools.run_draw, "draw a net with Graphviz"),
        "time": (tools.add_time_arguments, tools.run_time,
                 "time forward and backward per layer, as `caffe time`"),
        "solve": (add_solve_arguments, run_solve, "train a net with a YAML solver file"),
        "plot": (add_plot_arguments, run_plot, "plot the curves of a training run"),
        "convert": (add_convert_arguments, run_convert,
                    "write a .caffemodel or torchvision VGG16 file in pyfrcnn's weights format"),
    }


def make_parser():
    from . import registry  # imports torch: inside main's Ctrl-C guard

    parser = argparse.ArgumentParser(
        prog="pyfrcnn", description="Caffe-style Faster R-CNN on PyTorch.")
    parser.add_argument("--version", action="version", version=f"pyfrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = dict(_engine_commands())
    commands.update(registry.commands())
    for name, (add_arguments, run, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
        p.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors")
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


@contextlib.contextmanager
def deferred_ctrl_c():
    """Hold a Ctrl-C back until the block ends, then raise KeyboardInterrupt: one
    raised inside torch's start-up (a pybind11 callback while it imports) would
    abort the process instead of unwinding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def main(argv=None):
    """Run a command; its exit status. Ctrl-C at any moment (even while torch
    imports) ends with one line and status 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("pyfrcnn: interrupted", file=sys.stderr)
        return 130


def _main(argv):
    try:
        with deferred_ctrl_c():
            parser = make_parser()  # imports torch and the plugins
    except PyfrcnnError as e:
        print(f"pyfrcnn: error: {e}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    if not args.debug:
        logging.getLogger("pyfrcnn.net").setLevel(logging.WARNING)
    try:
        return args._run(args) or 0
    except (PyfrcnnError, OSError) as e:
        if args.debug:
            raise
        if isinstance(e, OSError):  # an output that cannot be written, a file that vanished
            e = output_error(e.filename or "a file", e, None)
        print(f"pyfrcnn {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pyfrcnn {args.command}: interrupted", file=sys.stderr)
        return 130
