"""Reading the text files a user hands us (prototxt, solver YAML, JSON), checked
before they are trusted: a regular file (not /dev/zero, a FIFO or a folder), of
a sane size, in UTF-8. Every refusal is one line naming the file (and, for a
bad byte, its line and column).
"""

import os
import stat

from .errors import PyfrcnnError

MAX_TEXT_BYTES = 256 * 2 ** 20  # far beyond any net or solver file; refuses runaway reads


def decode_utf8(data, where, error=PyfrcnnError):
    """`data` (bytes) as str; a byte that is not UTF-8 is an `error` at where:line:col."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(f"{where}:{line}:{column}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                    "save the file as UTF-8") from None


def read_bytes(path, what, error=PyfrcnnError, limit=MAX_TEXT_BYTES, head=None):
    """The bytes of a regular file of at most `limit` bytes (its first `head` bytes
    when given), or an `error` naming it."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a device, pipe or socket), not a {what}")
    if head is not None:
        limit = head
    elif info.st_size > limit:
        raise error(f"{path}: {info.st_size} bytes, more than the {limit} a {what} may have")
    try:
        with open(path, "rb") as f:
            data = f.read(min(limit, info.st_size) + 1)  # read(n) allocates n bytes
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if head is not None:
        return data[:head]
    if len(data) > limit:
        raise error(f"{path}: more than the {limit} bytes a {what} may have")
    return data


def read_text(path, what, error=PyfrcnnError, limit=MAX_TEXT_BYTES):
    """read_bytes decoded as UTF-8 (a leading byte-order mark dropped)."""
    text = decode_utf8(read_bytes(path, what, error, limit), os.fspath(path), error)
    return text[1:] if text.startswith("\ufeff") else text


def read_json(path, what, error=PyfrcnnError, limit=MAX_TEXT_BYTES):
    """The value of a JSON file; syntax errors give path:line:col, and a document
    nested too deeply (10^5 brackets) or with a 5000-digit number is refused too."""
    import json

    text = read_text(path, what, error, limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except RecursionError:
        raise error(f"{path}: not usable JSON: nested too deeply") from None
    except ValueError as e:  # an integer beyond Python's digit limit
        raise error(f"{path}: not usable JSON: {str(e).splitlines()[0][:200]}") from None
