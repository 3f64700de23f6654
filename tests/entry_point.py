"""Run `pyfrcnn ...` as its console script does, in a subprocess.

The script lives in a folder of its own, so (as with the installed
`pyfrcnn` command, and unlike `python -m pyfrcnn`) the current folder is not
on sys.path unless pyfrcnn puts it there; this checkout is found through
PYTHONPATH.
"""

import os
import subprocess
import sys
import tempfile

from tests.conftest import REPO_DIR

SCRIPT = "import sys\nfrom pyfrcnn.cli import main\nsys.exit(main())\n"
_script_path = None


def script_path():
    global _script_path
    if _script_path is None:
        folder = tempfile.mkdtemp(prefix="pyfrcnn-bin-")
        _script_path = os.path.join(folder, "pyfrcnn")
        with open(_script_path, "w") as f:
            f.write(SCRIPT)
    return _script_path


def environment(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR)] + [p for p in
                                         env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def pyfrcnn(*args, cwd=None, timeout=180, **env):
    """subprocess.CompletedProcess of `pyfrcnn ARGS` (text stdout and stderr)."""
    return subprocess.run([sys.executable, script_path(), *map(str, args)], cwd=cwd,
                          env=environment(**env), capture_output=True, text=True,
                          timeout=timeout)


def popen(*args, cwd=None, **env):
    return subprocess.Popen([sys.executable, script_path(), *map(str, args)], cwd=cwd,
                            env=environment(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
