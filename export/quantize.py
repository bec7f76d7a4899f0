"""int8 copy of an exported fp32 graph for CPUs (fp16 is traced directly: ``export_module``).

onnxruntime static quantisation, QDQ format, per-channel int8 weights and uint8
activations (MinMax ranges), calibrated on real images. Only the network itself is
quantised: the ``Conv``, ``Gemm`` and ``MatMul`` nodes traced from the backbone and the
prediction heads (ONNX names starting with the module paths in ``NETWORK_SCOPES``). Box
decoding, NMS, RoI pooling and the output selection stay float32, so box coordinates keep
sub-pixel resolution and the input and outputs keep Contract 3's types.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from prodet.export.onnx_contract import INPUT_NAME

NETWORK_SCOPES: tuple[str, ...] = (
    "/backbone/",
    "/head/",
    "/rpn_head/",
    "/box_head/",
    "/box_predictor/",
)
INT8_OP_TYPES: tuple[str, ...] = ("Conv", "Gemm", "MatMul")


def network_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes traced from the backbone and heads (see ``NETWORK_SCOPES``)."""
    names = [node.name for node in model.graph.node if node.name.startswith(NETWORK_SCOPES)]
    if not names:
        raise ValueError(
            "no node of the graph comes from the backbone or a head (names starting with "
            f"{', '.join(NETWORK_SCOPES)}); was it exported with export.onnx_export?"
        )
    return names


class _ImageReader(CalibrationDataReader):
    """Feeds calibration images to onnxruntime's quantiser, ``batch_size`` at a time."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self.images = images
        self.batch_size = batch_size
        self._batches: Iterator[dict[str, np.ndarray]] = iter(())
        self.rewind()

    def _generate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images) - self.batch_size + 1, self.batch_size):
            yield {INPUT_NAME: self.images[start : start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._generate()


def to_int8(
    model: onnx.ModelProto, calibration: np.ndarray, *, batch_size: int = 8
) -> onnx.ModelProto:
    """Statically quantise the network's Conv/Gemm/MatMul nodes (see the module doc).

    Args:
        model: the fp32 graph.
        calibration: float32 ``[N, 3, S, S]`` real, normalised images (a few dozen are
            enough for MinMax ranges); ``N >= batch_size``.
        batch_size: images per calibration run (the graph's own size if it is fixed).
    """
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    if first.HasField("dim_value"):
        batch_size = first.dim_value
    if len(calibration) < batch_size:
        raise ValueError(
            f"int8 calibration needs at least {batch_size} images, got {len(calibration)}"
        )
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="prodet-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(
            str(source),
            str(target),
            _ImageReader(images, batch_size),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_quantize=network_nodes(model),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(target))
