"""Make ``prodet.*`` importable from a checkout where prodet is not pip-installed.

Installed, the stage folders at the repository's top level (``annotations/`` ...
``serve/``) are the subpackages ``prodet.annotations`` ... ``prodet.serve`` (setuptools'
``package-dir`` in pyproject.toml). A bare copy of the repository, on a machine where
nothing can be installed, has no such mapping: ``import prodet.detection`` fails. Importing
this module checks that import and, only when prodet itself cannot be found, lays out the
installed namespace in a temporary folder, the way ``.ci/namespace_view.sh`` does for mypy:

    <tmp>/prodet/__init__.py, commands.py, ...  -> links to the repository's prodet/ files
    <tmp>/prodet/annotations                    -> link to the repository's annotations/
    ...                                            (one link per subpackage folder)

The subpackages and their folders are read from ``[tool.setuptools.package-dir]`` in
pyproject.toml, the mapping the install uses (``STAGES`` when Python lacks ``tomllib``),
then ``<tmp>`` goes first on ``sys.path`` and on ``PYTHONPATH``, so that worker processes
(spawned or forked) and subprocesses import the same modules. The folder is removed when
the interpreter exits. Import it before any prodet module::

    import bare_checkout  # noqa: F401  (sets up prodet.* when prodet is not installed)
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("annotations", "datasets", "detection", "export", "serve")

logger = logging.getLogger(__name__)


def subpackage_folders(repo: Path) -> dict[str, Path]:
    """``{"annotations": repo/annotations, ...}``: prodet's subpackages and their folders."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return {stage: repo / stage for stage in STAGES}
    with (repo / "pyproject.toml").open("rb") as file:
        mapping = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return {
        name.removeprefix("prodet."): repo / folder
        for name, folder in mapping.items()
        if name.startswith("prodet.") and name.count(".") == 1
    }


def namespace_view(repo: Path, folder: Path) -> Path:
    """Lay out ``folder/prodet`` as the installed namespace of ``repo``; return ``folder``."""
    package = folder / "prodet"
    package.mkdir()
    for entry in sorted((repo / "prodet").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, source in subpackage_folders(repo).items():
        (package / name).symlink_to(source, target_is_directory=True)
    return folder


def make_prodet_importable(repo: Path = REPO) -> Path | None:
    """Make ``import prodet.detection`` work; return the temporary folder used, or None
    when prodet was importable already (installed, editable or not).

    Raises:
        ModuleNotFoundError: a dependency of prodet (torch, ...) is missing; that is not
            something a path can fix.
    """
    try:
        importlib.import_module("prodet.detection")
        return None
    except ModuleNotFoundError as exc:
        if exc.name not in ("prodet", "prodet.detection"):
            raise
    # A ``prodet`` found without its stages (the repository root on sys.path) is dropped.
    for name in [m for m in sys.modules if m == "prodet" or m.startswith("prodet.")]:
        del sys.modules[name]
    folder = namespace_view(repo, Path(tempfile.mkdtemp(prefix="prodet-namespace-")))
    atexit.register(shutil.rmtree, folder, True)
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p
    )
    importlib.invalidate_caches()
    importlib.import_module("prodet.detection")
    logger.warning("prodet is not installed: importing it from %s through %s", repo, folder)
    return folder


NAMESPACE_FOLDER = make_prodet_importable()
