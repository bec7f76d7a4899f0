"""The ``prodet`` console command: one subcommand per job, each owned by its stage.

Subcommands are looked up by name and their stage's ``cli`` module is imported only
when that subcommand runs, so ``prodet serve`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

from annotations import __version__

# name -> ("module:function" taking argv and returning the exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("annotations.cli:main", "convert a Pascal VOC folder into a pickled dataset"),
    "synth": ("annotations.synth_cli:main", "draw the synthetic product-shelf VOC dataset"),
    "train": ("detection.cli:train_main", "train an SSD or Fast R-CNN detector"),
    "evaluate": ("detection.cli:evaluate_main", "VOC and COCO metrics of a checkpoint on a split"),
    "export": ("export.cli:export_main", "export a checkpoint to a parity-checked ONNX model"),
    "serve": ("serve.cli:serve_main", "serve an ONNX model over HTTP with micro-batching"),
    "predict": ("serve.cli:predict_main", "detect objects in image files with an ONNX model"),
    "demo": ("serve.demo_cli:demo_main", "run the whole pipeline on a synthetic product-shelf set"),
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
    module_name, function = SUBCOMMANDS[name][0].split(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, function)(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
