"""The run lock: <run folder>/pyfrcnn.lock, held while a run lives.

acquire() flocks the file and writes the holder's pid, host, start time and
command into it; a second acquire() while the holder lives fails with a
RunFolderError naming that process. The lock is released (the file removed)
when the run ends; a file left by a killed run is stale (no process holds its
flock) and is taken over, its old content kept in `stale` for the log. Where
fcntl is missing (Windows) the lock is an exclusive-create pid file.
"""

import datetime
import json
import os
import socket

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: the lock is an exclusive-create pid file
    fcntl = None

LOCK_NAME = "pyfrcnn.lock"


class RunFolderError(ConfigError):
    """A run folder in use, or holding an earlier run."""


class RunLock:
    """<folder>/pyfrcnn.lock, held from acquire() to release()."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None
        self.stale = None  # what a lock left by a dead run said, once taken over

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self, command=""):
        os.makedirs(self.folder, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "command": command}
        if fcntl is None:
            return self._acquire_exclusive(holder)
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RunFolderError(f"{self.path}: cannot create the run lock: "
                                     f"{e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                other = _read_holder(fd)
                os.close(fd)
                raise RunFolderError(self._in_use(other)) from None
            try:  # the holder before us may have removed the file between open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = _read_holder(fd)
            if old:
                self.stale = (f"{self.path}: a stale lock of pid {old.get('pid', '?')} "
                              f"({old.get('started', '?')}, no longer running) taken over")
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            self.fd = fd
            return self
        raise RunFolderError(f"{self.path}: the run lock keeps changing hands")

    def _acquire_exclusive(self, holder):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            with open(self.path, "rb") as f:
                other = _parse_holder(f.read())
            raise RunFolderError(self._in_use(other) + f" (if it is not, delete {self.path})") \
                from None
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self.fd = fd
        return self

    def _in_use(self, other):
        other = other or {}
        what = f"pid {other.get('pid', '?')}"
        if other.get("host") and other["host"] != socket.gethostname():
            what += f" on {other['host']}"
        if other.get("started"):
            what += f", since {other['started']}"
        if other.get("command"):
            what += f": {other['command']}"
        return (f"{self.folder} is in use by a live run ({what}); wait for it to end, stop it, "
                "or train into another folder with --out DIR")

    def release(self):
        if self.fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def _read_holder(fd):
    try:
        return _parse_holder(os.pread(fd, 4096, 0))
    except OSError:
        return None


def _parse_holder(data):
    try:
        value = json.loads(data.decode("utf-8"))
        return value if isinstance(value, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None
