"""Write and safely read the pickled dataset.

Pickle is the product's dataset format (the course's VOC-to-pkl step), but ``pickle.load``
on an untrusted file runs arbitrary code. ``load_dataset`` therefore uses a restricted
unpickler that admits only the schema's own classes and the numpy internals needed to
rebuild arrays; anything else (``os.system``, ``builtins.eval``, ...) raises
``UnsafePickleError`` before it can run.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.record_table import RecordTable
from prodet.annotations.schema import FORMAT_VERSION, VocDataset, compute_content_hash

PICKLE_PROTOCOL = 4

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # Format 1 pickled one ImageRecord per image: admitted so that such a file loads
        # far enough to be refused by its version number, with the hint to convert again.
        ("prodet.annotations.image_record", "ImageRecord"),
        ("prodet.annotations.schema", "VocDataset"),
        ("prodet.annotations.record_table", "RecordTable"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


# Where files written by earlier versions name the schema's classes: before the stages
# moved under the `prodet` namespace, and before ImageRecord got its own module.
_LEGACY_GLOBALS: dict[tuple[str, str], str] = {
    ("annotations.schema", "VocDataset"): "prodet.annotations.schema",
    ("annotations.schema", "ImageRecord"): "prodet.annotations.image_record",
    ("annotations.record_table", "RecordTable"): "prodet.annotations.record_table",
    ("prodet.annotations.schema", "ImageRecord"): "prodet.annotations.image_record",
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file references a global outside the dataset schema."""


class DatasetFileError(ValueError):
    """The file is not a prodet dataset this version can read."""


class _SchemaUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> type:
        module = _LEGACY_GLOBALS.get((module, name), module)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refusing to load: the pickle references {module}.{name}, "
                "which is not part of the prodet dataset schema (the file may be malicious "
                "or not a prodet dataset; re-create it with `prodet convert`)"
            )
        return super().find_class(module, name)


def dataset_bytes(dataset: VocDataset) -> bytes:
    """The pickle ``dump_dataset`` writes.

    The records pickle as their ``RecordTable`` columns: a few lists of strings and six
    arrays, whatever the number of records.
    """
    return pickle.dumps(dataset, protocol=PICKLE_PROTOCOL)


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
    if not isinstance(obj.records, RecordTable):
        raise DatasetFileError(f"{source}: records are not a RecordTable of the schema")
    if verify_hash:
        actual = compute_content_hash(obj.classes, obj.records, obj.splits)
        if actual != obj.content_hash:
            raise DatasetFileError(
                f"{source}: content hash mismatch (stored {obj.content_hash[:12]}, "
                f"computed {actual[:12]}): the file was modified or corrupted"
            )
    return obj
