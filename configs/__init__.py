"""Named training recipes and ``prodet tune`` search spaces: small YAML files.

A recipe is a ``prodet train --config`` file, ``configs/NAME.yaml``: the settings a
benchmark or the demo trains with (``BENCHMARKS.md`` says what each one measured). A
search space is ``configs/tune/HEAD.yaml``, the default of ``prodet tune --space``.
The folder sits at the repository's top level; installed, it is the package
``prodet.configs`` and the YAML files are its package data (an editable install reads
the repository's files), so ``prodet demo`` and ``prodet tune`` find them either way.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent


def recipe_names() -> list[str]:
    """The recipes shipped with prodet, by name (``commodity-ssd-fpn``, ``demo-ssd``, ...)."""
    return sorted(path.stem for path in CONFIGS.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The YAML file of recipe ``name``; a ValueError lists the recipes when it is unknown."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"no recipe {name!r} in {CONFIGS} (recipes: {', '.join(recipe_names()) or 'none'})"
        )
    return path


def tune_space_path(head: str) -> Path:
    """The default ``prodet tune`` search space of ``head`` (``ssd`` or ``fast_rcnn``)."""
    path = CONFIGS / "tune" / f"{head.replace('_', '-')}.yaml"
    if not path.is_file():
        raise ValueError(f"no default search space for head {head!r} (looked for {path})")
    return path
