"""``prodet serve``: the HTTP service, its options generated from ``Settings``.

The options of ``--ray`` (Ray Serve replicas, ``serve/ray_cli.py``) are generated from
``RayOptions`` the same way; plain ``prodet serve`` never imports Ray.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from prodet.serve.model_runner import ModelLoadError
from prodet.serve.ray_options import CLUSTER_EXTRA, RayOptions
from prodet.serve.settings import Settings

_SERVE_DESCRIPTION = (
    "Serve an ONNX detector over HTTP (API docs at /docs, upload page at /). Every option can "
    "also be set by the environment variable shown; options override the environment."
)


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodet serve", description=_SERVE_DESCRIPTION)
    _add_options(parser, Settings)
    ray_group = parser.add_argument_group(
        "Ray Serve", f"replicas on a Ray cluster, with --ray (needs {CLUSTER_EXTRA})"
    )
    _add_options(ray_group, RayOptions)
    return parser


def _add_options(parser: argparse._ActionsContainer, model: type[BaseSettings]) -> None:
    """One option per field of ``model``, with its environment variable and default."""
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"PRODET_{name.upper()}"
        if field.is_required():
            default = "required"
        elif field.get_default() is None:
            default = "default: none"
        else:
            default = f"default {field.get_default(call_default_factory=True)!r}"
        help_text = f"{field.description or name} (env {env}; {default})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if field.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = get_args(field.annotation)
        else:
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag, **kwargs)


def _settings_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        hint = " (use --model or PRODET_MODEL)" if name == "model" else ""
        lines.append(f"  {name}: {err['msg']}{hint}")
    return "invalid settings:\n" + "\n".join(lines)


def serve_main(argv: list[str]) -> int:
    """``prodet serve``: load, check and warm up the model, then serve until interrupted."""
    values = vars(_serve_parser().parse_args(argv))
    try:
        settings = Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})
        options = RayOptions(**{k: v for k, v in values.items() if k in RayOptions.model_fields})
    except ValidationError as exc:
        print(f"prodet serve: {_settings_error(exc)}", file=sys.stderr)
        return 2
    if not options.ray and options.cluster_only_fields():
        flags = ", ".join("--" + name.replace("_", "-") for name in options.cluster_only_fields())
        print(f"prodet serve: {flags} only apply with --ray", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.warn_if_exposed()
    if options.ray:
        from prodet.serve.ray_cli import serve_on_ray

        return serve_on_ray(settings, options)
    import uvicorn

    from prodet.serve.app import create_app
    from prodet.serve.service import load_runner, parallelism

    try:
        runner = load_runner(settings)
    except ModelLoadError as exc:
        print(f"prodet serve: {exc}", file=sys.stderr)
        return 1
    streams = parallelism(settings, on_gpu=runner.on_gpu).streams  # as the Service will
    print(
        f"prodet serve: {runner.model_id} version {runner.version} on {runner.provider}, "
        f"warm-up {runner.warmup_ms:.0f} ms; {streams} inference stream(s) of "
        f"{runner.intra_op_threads} onnxruntime thread(s)",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings, runner),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
    return 0
