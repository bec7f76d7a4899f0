"""``prodet tune``'s search space: a YAML file of TrainConfig keys, each a range
(``KEY: {low, high[, log, step]}``), a list of choices or a fixed value, checked whole
before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml  # no types-PyYAML stubs in the environment

from prodet.detection.config import config_keys, unknown_key_message

RANGE_KEYS = frozenset({"low", "high", "log", "step"})


@dataclass(frozen=True)
class Param:
    """One key of a search space: a range (``low``..``high``), choices, or a fixed value."""

    key: str
    kind: str  # "int", "float", "choice" or "fixed"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None

    def corners(self) -> list[Any]:
        """The values whose configs must be valid: the range's ends, every choice."""
        if self.kind in ("int", "float"):
            return [self.low, self.high]
        if self.kind == "choice":
            return list(self.choices)
        return [self.value]

    def suggest(self, trial: optuna.Trial) -> Any:
        """This trial's value: sampled by ``trial`` (and recorded there), or the fixed one."""
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.choices)
        return self.value


def load_space(path: str | Path) -> list[Param]:
    """Read a search space YAML file: ``KEY: {low, high[, log, step]}`` is a range (integer
    for an integer key), ``KEY: [a, b]`` choices, ``KEY: value`` fixed. Keys are
    TrainConfig keys, nested ones dotted (``ssd.fpn_channels``).

    Raises ValueError naming the file and the key for an unknown key (with the closest
    valid one), an empty range or choice list, or a range over a non-numeric key.
    """
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--space {path}: cannot read ({exc})") from None
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"--space {path}: expected a mapping of config keys to ranges")
    types = config_keys()
    params = []
    for key, spec in tree.items():
        where = f"--space {path}: {key}"
        if key not in types:
            raise ValueError(f"--space {path}: {unknown_key_message(str(key))}")
        params.append(_param(str(key), spec, types[key], where))
    return params


def _param(key: str, spec: Any, annotation: Any, where: str) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{where}: an empty list of choices; give at least one value")
        if not all(v is None or isinstance(v, bool | int | float | str) for v in spec):
            raise ValueError(f"{where}: choices must be numbers, strings or booleans")
        return Param(key, "choice", choices=tuple(spec))
    if not isinstance(spec, dict):
        return Param(key, "fixed", value=spec)
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or "low" not in spec or "high" not in spec:
        raise ValueError(
            f"{where}: a range is {{low: L, high: H}} with optional log and step"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    numeric = annotation if annotation in (int, float) else _optional_number(annotation)
    if numeric is None:
        raise ValueError(f"{where}: is not numeric ({annotation}); give a list of choices")
    try:
        low, high = float(spec["low"]), float(spec["high"])
        step = float(spec["step"]) if spec.get("step") is not None else None
    except (TypeError, ValueError):
        raise ValueError(f"{where}: low, high and step must be numbers") from None
    if not low < high:
        raise ValueError(
            f"{where}: empty range, low={spec['low']} is not below high={spec['high']} "
            f"(a fixed value is written as `{key}: VALUE`)"
        )
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ValueError(f"{where}: log: true needs low > 0, got {spec['low']}")
    if numeric is int and not (low.is_integer() and high.is_integer()):
        raise ValueError(f"{where}: an integer key needs integer low and high")
    return Param(key, numeric.__name__, low=low, high=high, log=log, step=step)


def _optional_number(annotation: Any) -> type | None:
    """``int`` for ``int | None`` (``float`` likewise); None for anything else."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None
