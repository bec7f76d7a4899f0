"""The ``prodet`` console command: one subcommand per job, each owned by its stage.

This is the command layer, above every stage. Each handler imports its stage's ``cli``
module only when its subcommand runs, so ``prodet convert`` and ``prodet serve`` never
import torch; the imports are plain statements, so linters and import-linter see them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from prodet import __version__

Handler = Callable[[list[str]], int]


def _convert(argv: list[str]) -> int:
    from prodet.annotations.cli import main

    return main(argv)


def _synth(argv: list[str]) -> int:
    from prodet.annotations.synth_cli import main

    return main(argv)


def _train(argv: list[str]) -> int:
    from prodet.detection.cli import train_main

    return train_main(argv)


def _tune(argv: list[str]) -> int:
    from prodet.detection.tune_cli import tune_main

    return tune_main(argv)


def _evaluate_onnx(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from prodet.export.onnx_evaluate import evaluate_onnx

    return evaluate_onnx(*args, **kwargs)


def _evaluate(argv: list[str]) -> int:
    from prodet.detection.cli import evaluate_main

    return evaluate_main(argv, evaluate_onnx=_evaluate_onnx)


def _export(argv: list[str]) -> int:
    from prodet.export.cli import export_main

    return export_main(argv)


def _serve(argv: list[str]) -> int:
    from prodet.serve.cli import serve_main

    return serve_main(argv)


def _predict(argv: list[str]) -> int:
    from prodet.serve.predict_cli import predict_main

    return predict_main(argv)


def _demo(argv: list[str]) -> int:
    from prodet.demo_cli import demo_main

    return demo_main(argv)


# name -> (handler taking argv and returning the exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[Handler, str]] = {
    "convert": (_convert, "convert a Pascal VOC folder into a pickled dataset"),
    "synth": (_synth, "draw the synthetic product-shelf VOC dataset"),
    "train": (_train, "train an SSD or Fast R-CNN detector"),
    "tune": (_tune, "search training hyperparameters with Optuna"),
    "evaluate": (_evaluate, "VOC and COCO metrics of a checkpoint or ONNX model on a split"),
    "export": (_export, "export a checkpoint to a parity-checked ONNX model"),
    "serve": (_serve, "serve an ONNX model over HTTP with micro-batching"),
    "predict": (_predict, "detect objects in image files with an ONNX model"),
    "demo": (_demo, "run the whole pipeline on a synthetic product-shelf set"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {n:<{width}}  {h}" for n, (_, h) in SUBCOMMANDS.items())
    return (
        "usage: prodet [-h] [--version] COMMAND [ARGS...]\n\n"
        "Object detection pipeline for product images.\n\n"
        f"commands:\n{rows}\n\n"
        "Run `prodet COMMAND --help` for a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``prodet COMMAND ARGS...`` to the command's stage."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"prodet {__version__}")
        return 0
    name = args[0]
    if name not in SUBCOMMANDS:
        print(f"prodet: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(SUBCOMMANDS[name][0](args[1:]))


if __name__ == "__main__":
    sys.exit(main())
