"""The `pyfrcnn` command line: the engine's own commands (check, draw, time,
solve, plot) and those that plugins register (test, eval, detect, data, ...).

Every command prints a one-line error and exits 1 on bad input; `--debug`
shows the traceback instead. `--debug` and `--quiet` go before or after the
command's name; a usage error names the command. The options every command
shares (--device/--gpu, --set, --data-root, the net options) are in
pyfrcnn.arguments, re-exported here.
"""

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from . import __version__
from .arguments import (add_data_root_argument, add_device_argument, add_net_arguments,  # noqa: F401
                        add_set_argument, build_net, device_from_args, parse_input_shapes,
                        resolve_device)
from .errors import PyfrcnnError, output_error


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


def _add_verbosity(parser, default):
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks and debug logs")
    parser.add_argument("--quiet", "-q", action="store_true", default=default,
                        help="only warnings and errors")


def make_parser():
    from . import registry  # imports torch: inside main's Ctrl-C guard

    parser = argparse.ArgumentParser(
        prog="pyfrcnn", description="Caffe-style Faster R-CNN on PyTorch.")
    parser.add_argument("--version", action="version", version=f"pyfrcnn {__version__}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = dict(_engine_commands())
    commands.update(registry.commands())
    for name, (add_arguments, run, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_verbosity(p, argparse.SUPPRESS)  # given here or before the command: either counts
        add_arguments(p)
        p.set_defaults(_run=run, _parser=p)
    return parser


def _current_folder_importable():
    """python_param modules in the current folder import, as `python -m` and
    Caffe users with '.' on PYTHONPATH expect; appended, so it shadows nothing."""
    here = os.getcwd()
    if not any(os.path.abspath(p or ".") == here for p in sys.path):
        sys.path.append(here)


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
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame `pyfrcnn`; the command's own parser names it
        (getattr(args, "_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    _current_folder_importable()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    from . import progress

    progress.QUIET = bool(args.quiet)

    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s] %(message)s",
                        datefmt="%H:%M:%S", handlers=[progress.ConsoleHandler(sys.stderr)])
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
    except KeyboardInterrupt as e:  # a command may say how to go on (solve: the resume command)
        note = f"; {e}" if str(e) else ""
        print(f"pyfrcnn {args.command}: interrupted{note}", file=sys.stderr)
        return 130
