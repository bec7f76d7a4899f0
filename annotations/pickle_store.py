"""Write and safely read the pickled dataset.

Pickle is the product's dataset format (the course's VOC-to-pkl step), but ``pickle.load``
on an untrusted file runs arbitrary code. ``load_dataset`` therefore uses a restricted
unpickler that admits only the schema's own classes and the numpy internals needed to
rebuild arrays; anything else (``os.system``, ``builtins.eval``, ...) raises
``UnsafePickleError`` before it can run.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from annotations.atomic import atomic_write_bytes
from annotations.schema import FORMAT_VERSION, ImageRecord, VocDataset, compute_content_hash

PICKLE_PROTOCOL = 4

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("annotations.schema", "ImageRecord"),
        ("annotations.schema", "VocDataset"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The file references a global outside the dataset schema."""


class DatasetFileError(ValueError):
    """The file is not a prodet dataset this version can read."""


class _SchemaUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refusing to load: the pickle references {module}.{name}, "
                "which is not part of the prodet dataset schema (the file may be malicious "
                "or not a prodet dataset; re-create it with `prodet convert`)"
            )
        return super().find_class(module, name)


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array rebuilder


def _reduce_array(a: np.ndarray, zero: int = 0) -> tuple[Any, ...] | str | None:
    """``a.__reduce__()`` for plain C-ordered numeric arrays, built without numpy's overhead.

    numpy's ``__reduce__`` costs about 3 us per array (three per record). The tuple here
    is equal to numpy's, so the pickle's bytes are the same. ``(zero,)`` is built per
    call, as numpy does, so the pickler memoizes exactly the same objects.
    """
    if a.dtype.hasobject or (a.ndim > 1 and a.flags.fnc):
        return a.__reduce__()  # object arrays pickle their items; F-ordered raw data differ
    return (_RECONSTRUCT, (np.ndarray, (zero,), b"b"), (1, a.shape, a.dtype, False, a.tobytes()))


def _fast_reduce_agrees() -> bool:
    """Whether ``_reduce_array`` matches this numpy's ``__reduce__`` (checked at import)."""
    samples = [
        np.arange(8, dtype=np.float32).reshape(2, 4),
        np.zeros((0, 4), dtype=np.float32),
        np.arange(3, dtype=np.int64),
        np.array([True, False]),
        np.arange(12, dtype=np.float32).reshape(3, 4)[1:],
    ]
    try:
        return all(_reduce_array(a) == a.__reduce__() for a in samples)
    except Exception:  # a future numpy with another layout: use numpy's own reduce
        return False


_FAST_ARRAYS = _fast_reduce_agrees()


def dataset_bytes(dataset: VocDataset) -> bytes:
    """The pickle ``dump_dataset`` writes (equal to ``pickle.dumps`` at ``PICKLE_PROTOCOL``)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL)
    if _FAST_ARRAYS:  # reducers registered with copyreg still take precedence
        table: dict[type, Callable[..., Any]] = {np.ndarray: _reduce_array}
        pickler.dispatch_table = {**table, **copyreg.dispatch_table}
    pickler.dump(dataset)
    return buffer.getvalue()


def dump_dataset(dataset: VocDataset, path: str | os.PathLike[str]) -> None:
    """Pickle ``dataset`` to ``path`` atomically (temp file + rename)."""
    atomic_write_bytes(path, dataset_bytes(dataset))


def load_dataset(path: str | os.PathLike[str], *, verify_hash: bool = True) -> VocDataset:
    """Load a dataset written by ``dump_dataset`` without executing foreign code.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle references anything outside the schema.
        DatasetFileError: not a dataset, an unknown format version, or a content hash
            that does not match the content (a corrupted or edited file).
    """
    source = str(path)
    data = Path(path).read_bytes()
    try:
        obj = _SchemaUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or garbage bytes raise many exception types
        raise DatasetFileError(
            f"{source}: not a readable prodet dataset ({type(exc).__name__}: {exc}); "
            "re-create it with `prodet convert`"
        ) from None
    if not isinstance(obj, VocDataset):
        raise DatasetFileError(f"{source}: holds a {type(obj).__name__}, not a VocDataset")
    if obj.format_version != FORMAT_VERSION:
        raise DatasetFileError(
            f"{source}: dataset format version {obj.format_version}, this prodet reads "
            f"version {FORMAT_VERSION}; re-create it with `prodet convert`"
        )
    if not all(isinstance(r, ImageRecord) for r in obj.records):
        raise DatasetFileError(f"{source}: records are not ImageRecord objects")
    if verify_hash:
        actual = compute_content_hash(obj.classes, obj.records, obj.splits)
        if actual != obj.content_hash:
            raise DatasetFileError(
                f"{source}: content hash mismatch (stored {obj.content_hash[:12]}, "
                f"computed {actual[:12]}): the file was modified or corrupted"
            )
    return obj
