"""The service's model input: hand-computed values, and EXIF orientation applied.

Decoding and the geometry have their own tests (``tests/annotations/test_image_decode.py``,
``tests/datasets/test_geometry.py``); ``test_train_serve_skew.py`` compares with training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from prodet.export.onnx_contract import parse_metadata
from prodet.serve.preprocess import prepare_image, to_model_input
from tests.serve.conftest import encode
from tests.serve.tiny_model import metadata

META = parse_metadata(metadata())
PAD_VALUE = (128 / 255 - 0.5) / 0.25


def test_model_input_values() -> None:
    white = np.full((64, 128, 3), 255, np.uint8)
    tensor, geometry = to_model_input(white, META)
    assert geometry.pad == (0, 16)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 16:48], 2.0, atol=1e-6)  # (1 - 0.5) / 0.25
    np.testing.assert_allclose(tensor[:, :16], PAD_VALUE, atol=1e-6)
    np.testing.assert_allclose(tensor[:, 48:], PAD_VALUE, atol=1e-6)


def test_model_input_is_the_per_pixel_formula_bit_for_bit() -> None:
    # The service looks values up in a table; training's eval normalises pixel by pixel.
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tensor, _ = to_model_input(pixels, META)
    mean = np.asarray(META.mean, dtype=np.float32)
    std = np.asarray(META.std, dtype=np.float32)
    direct = (pixels.astype(np.float32) * np.float32(1 / 255) - mean) / std
    assert np.array_equal(tensor, direct.transpose(2, 0, 1))
    assert tensor.flags.c_contiguous


def test_prepared_image_is_upright_by_its_exif_tag() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise for display
    data = encode(Image.new("RGB", (128, 64), "white"), "JPEG", exif=exif, quality=100)
    prepared = prepare_image(data, META, max_pixels=10**6)
    assert (prepared.width, prepared.height, prepared.format) == (64, 128, "JPEG")
    assert prepared.geometry.original == (64, 128) and prepared.geometry.pad == (16, 0)
    np.testing.assert_allclose(prepared.tensor[:, :, :16], PAD_VALUE, atol=1e-6)
