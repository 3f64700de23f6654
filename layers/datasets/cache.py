"""The parsed-annotation cache: one pickle per dataset, keyed by its files.

The key hashes a format version, the parser's settings and every source file's
path, size and modification time, so editing, adding or touching an
annotation file gives a new key and the files are parsed again. Files are
written to a temporary name and renamed, so a reader never sees half a cache;
a cache that cannot be read or written is ignored with a warning.
"""

import hashlib
import json
import logging
import os
import pickle
import re

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: records keep the boxes as given for scoring (eval_*)


def file_signature(path):
    """(path, size, mtime_ns) of a file, or (path, None, None) if it is absent."""
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None, None)
    return (str(path), st.st_size, st.st_mtime_ns)


def cache_key(settings, signatures):
    digest = hashlib.sha1()
    digest.update(json.dumps([CACHE_VERSION, settings], sort_keys=True).encode())
    for signature in signatures:
        digest.update(repr(signature).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:20]


def cache_path(cache_dir, name, key):
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"
    return os.path.join(cache_dir, f"{safe}_gt_{key}.pkl")


def load(path):
    """The cached value at `path`, or None."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            value = pickle.load(f)
    except Exception as e:
        log.warning("%s: unreadable annotation cache ignored: %s", path, e)
        return None
    log.info("annotations loaded from cache %s", path)
    return value


def save(path, value):
    if not path:
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("%s: cannot write the annotation cache: %s", path, e)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return
    log.info("annotations cached in %s", path)
