import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C before main's own guard is in place
    print("pyfrcnn: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
