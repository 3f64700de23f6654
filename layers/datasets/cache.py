"""The parsed-annotation cache: one .npz file per dataset, keyed by its files.

The key hashes a format version, the parser's settings and every source file's
path, size and modification time, so editing, adding or touching an
annotation file gives a new key and the files are parsed again. Files are
written to a temporary name and renamed, so a reader never sees half a cache;
a cache that cannot be read or written is ignored with a warning.

No pickle: reading a cache never runs code. A cached value (dicts, lists,
tuples, strings, numbers and numpy arrays) is stored as JSON with each array
replaced by a reference into a few concatenated arrays (one per dtype and
trailing shape), and read back with np.load(allow_pickle=False).
"""

import hashlib
import json
import logging
import os
import re

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: .npz, not pickle; 3: records keep the boxes as given for scoring (eval_*)
_META = "meta_json"


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
    return os.path.join(cache_dir, f"{safe}_gt_{key}.npz")


def encode(value):
    """(JSON-able value, {group: array}): numpy arrays out of `value`, concatenated
    per dtype and trailing shape, replaced by {"__nd__": [group, start, stop, shape]}."""
    groups, index, sizes = {}, {}, {}

    def walk(v):
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TypeError("cannot cache an array of Python objects")
            flat = v.reshape((-1,) + v.shape[1:]) if v.ndim else v.reshape(1)
            key = (flat.dtype.str, flat.shape[1:])
            if key not in index:
                index[key] = name = f"g{len(index)}"
                groups[name], sizes[name] = [], 0
            name = index[key]
            start = sizes[name]
            groups[name].append(flat)
            sizes[name] += len(flat)
            return {"__nd__": [name, start, sizes[name], list(v.shape)]}
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError("dict keys must be strings")
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return {"__tuple__": [walk(x) for x in v]}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        raise TypeError(f"cannot cache a {type(v).__name__}")

    meta = walk(value)
    return meta, {name: np.concatenate(parts) for name, parts in groups.items()}


def decode(meta, arrays):
    """What encode took apart, put back together."""
    if isinstance(meta, dict):
        if "__nd__" in meta:
            name, start, stop, shape = meta["__nd__"]
            return arrays[name][start:stop].reshape(shape).copy()
        if "__tuple__" in meta:
            return tuple(decode(x, arrays) for x in meta["__tuple__"])
        return {k: decode(x, arrays) for k, x in meta.items()}
    if isinstance(meta, list):
        return [decode(x, arrays) for x in meta]
    return meta


def load(path):
    """The cached value at `path`, or None."""
    if not path or not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
        value = decode(meta, arrays)
    except Exception as e:  # any unreadable, foreign or hostile file: parse again
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
        meta, arrays = encode(value)
        arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as e:
        log.warning("%s: cannot write the annotation cache: %s", path, e)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return
    log.info("annotations cached in %s", path)
