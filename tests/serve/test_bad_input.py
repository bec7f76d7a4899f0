"""Every kind of bad input gets its status and a JSON {error, detail}; none is a 500.

TestClient re-raises server exceptions, so any 500 caused by input fails these tests, and
each test ends by checking that the service still answers a good request.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from prodet.serve.app import create_app
from tests.annotations.jpeg_samples import with_big_thumbnail, with_orientation
from tests.serve.conftest import assert_error, encode, make_settings, solid, upload

GOOD = solid(48, 32)


def _still_serving(client: TestClient) -> None:
    response = client.post("/v1/detect", files=upload(GOOD))
    assert response.status_code == 200 and len(response.json()["detections"]) == 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny grayscale PNG whose header claims ``width x height`` (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def strict_client(model_path: Path) -> Iterator[TestClient]:
    """Small limits: 64 KB bodies, 100k pixels, 2 images per batch request."""
    settings = make_settings(
        model_path, max_body_bytes=65_536, max_pixels=100_000, max_batch_images=2
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"hello, I am text", "notes.png"),
        (b"%PDF-1.7\n1 0 obj<<>>endobj", "invoice.pdf"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "logo.svg"),
        (b"", "empty.jpg"),
        (b"\x00" * 100, "zeros.jpg"),
    ],
)
def test_non_images_are_415(client: TestClient, data: bytes, name: str) -> None:
    assert_error(client.post("/v1/detect", files=upload(data, name)), 415, "unsupported_media_type")
    raw = client.post("/v1/detect", content=data, headers={"Content-Type": "image/png"})
    assert_error(raw, 415, "unsupported_media_type")
    _still_serving(client)


def test_wrong_content_types_are_415(client: TestClient) -> None:
    for content_type in ("text/plain", "application/json", ""):
        response = client.post("/v1/detect", content=GOOD, headers={"Content-Type": content_type})
        assert_error(response, 415, "unsupported_media_type")
    batch = client.post("/v1/detect/batch", content=GOOD, headers={"Content-Type": "image/png"})
    assert_error(batch, 415, "unsupported_media_type")
    _still_serving(client)


def test_truncated_and_corrupt_images_are_400(client: TestClient) -> None:
    jpeg = encode(Image.effect_noise((200, 200), 60).convert("RGB"), "JPEG")
    png = encode(Image.effect_noise((200, 200), 60).convert("RGB"), "PNG")
    corrupt_png = bytearray(png)
    corrupt_png[60:80] = b"\xff" * 20  # inside IDAT: checksum mismatch
    for data in (jpeg[: len(jpeg) // 2], png[: len(png) // 2], bytes(corrupt_png), png[:30]):
        body = assert_error(client.post("/v1/detect", files=upload(data, "x")), 400, "bad_image")
        assert "truncated or damaged" in body["detail"]
    _still_serving(client)


def test_decompression_bomb_is_refused_before_decoding(client: TestClient) -> None:
    bomb = png_claiming(10_000, 5_000)  # within Pillow's own limit, over ours (40 MP)
    assert len(bomb) < 200
    body = assert_error(client.post("/v1/detect", files=upload(bomb)), 413, "payload_too_large")
    assert "50,000,000 pixels; the limit is 40,000,000" in body["detail"]
    huge = png_claiming(30_000, 30_000)  # over Pillow's limit too: refused in Image.open
    body = assert_error(client.post("/v1/detect", files=upload(huge)), 413, "payload_too_large")
    assert "the limit is 40,000,000 pixels" in body["detail"]
    _still_serving(client)


def test_size_limits_are_413(strict_client: TestClient) -> None:
    big = assert_error(
        strict_client.post("/v1/detect", files=upload(solid(400, 300))), 413, "payload_too_large"
    )
    assert "120,000 pixels" in big["detail"]
    body = b"\xff\xd8\xff" + bytes(70_000)
    declared = strict_client.post(
        "/v1/detect", content=body, headers={"Content-Type": "image/jpeg"}
    )
    assert_error(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield bytes(8192)

    streamed = strict_client.post(
        "/v1/detect", content=chunks(), headers={"Content-Type": "image/jpeg"}
    )
    assert_error(streamed, 413, "payload_too_large")
    files = [("images", (f"{i}.png", solid(8, 8), "image/png")) for i in range(3)]
    too_many = strict_client.post("/v1/detect/batch", files=files)
    assert "more than 2 image(s)" in assert_error(too_many, 413, "payload_too_large")["detail"]
    _still_serving(strict_client)


@pytest.mark.parametrize(
    "query",
    [
        "score_threshold=2",
        "score_threshold=-0.1",
        "score_threshold=abc",
        "score_threshold=nan",
        "max_detections=-1",
        "max_detections=1.5",
        "classes=giraffe",
    ],
)
def test_bad_parameters_are_422(client: TestClient, query: str) -> None:
    response = client.post(f"/v1/detect?{query}", files=upload(GOOD))
    assert_error(response, 422, "invalid_parameter")


def test_bad_form_fields_are_422(client: TestClient) -> None:
    wrong_name = client.post("/v1/detect", files=upload(GOOD, field="file"))
    assert "'image'" in assert_error(wrong_name, 422, "invalid_parameter")["detail"]
    as_text = client.post("/v1/detect", data={"image": "not a file"}, files={"x": ("x", b"1")})
    assert_error(as_text, 422, "invalid_parameter")
    two = client.post("/v1/detect", files=[("image", ("a.png", GOOD, "image/png"))] * 2)
    assert_error(two, 413, "payload_too_large")
    no_boundary = client.post(
        "/v1/detect", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    assert_error(no_boundary, 400, "bad_request")
    _still_serving(client)


def test_unknown_class_detail_lists_the_known_ones(client: TestClient) -> None:
    body = client.post("/v1/detect?classes=giraffe", files=upload(GOOD)).json()
    assert "giraffe" in body["detail"] and "bottle" in body["detail"]


def test_batch_error_names_the_bad_image(client: TestClient) -> None:
    files = [
        ("images", ("fine.png", GOOD, "image/png")),
        ("images", ("broken.png", GOOD[:40], "image/png")),
    ]
    body = assert_error(client.post("/v1/detect/batch", files=files), 400, "bad_image")
    assert body["detail"].startswith("broken.png:")


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/detect"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("image", "image_format"),
    [
        (Image.new("L", (40, 30), 255), "PNG"),
        (Image.new("1", (40, 30), 1), "PNG"),
        (Image.new("RGB", (40, 30), "white").convert("P"), "PNG"),
        (Image.new("RGB", (40, 30), "white").convert("P"), "GIF"),
        (Image.new("RGBA", (40, 30), (255, 255, 255, 255)), "PNG"),
        (Image.new("LA", (40, 30), (255, 0)), "PNG"),
        (Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)), "PNG"),
        (Image.new("CMYK", (40, 30), (0, 0, 0, 0)), "JPEG"),
        (Image.new("CMYK", (40, 30), (0, 0, 0, 0)), "TIFF"),
        (Image.new("RGB", (40, 30), "white"), "WEBP"),
        (Image.new("RGB", (40, 30), "white"), "BMP"),
        (Image.new("RGB", (40, 30), "white"), "TIFF"),
    ],
    ids=[
        "L",
        "1",
        "P",
        "P-gif",
        "RGBA",
        "LA-transparent",
        "I16",
        "CMYK-jpeg",
        "CMYK-tiff",
        "webp",
        "bmp",
        "tiff",
    ],
)
def test_modes_and_formats_are_converted(
    client: TestClient, image: Image.Image, image_format: str
) -> None:
    response = client.post("/v1/detect", files=upload(encode(image, image_format)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (40, 30)
    # Every one of these is white once converted (transparent pixels composite on white).
    assert len(body["detections"]) == 3


def test_float_images_are_refused_with_415(client: TestClient) -> None:
    data = encode(Image.fromarray(np.ones((8, 8), dtype=np.float32)), "TIFF")
    body = assert_error(
        client.post("/v1/detect", files=upload(data)), 415, "unsupported_media_type"
    )
    assert "'F'" in body["detail"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF tags
def test_mutated_images_never_cause_a_500(client: TestClient) -> None:
    rng = random.Random(7)
    seeds = [
        encode(Image.effect_noise((64, 48), 50).convert("RGB"), fmt)
        for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
    ]
    statuses: set[int] = set()
    for _ in range(60):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(1, len(data))]
        response = client.post("/v1/detect", files=upload(bytes(data)))
        assert response.status_code in (200, 400, 413, 415), response.text
        if response.status_code != 200:
            assert set(response.json()) == {"error", "detail"}
        statuses.add(response.status_code)
    assert {200, 400} <= statuses  # the mutations reach both the decoder's paths
    _still_serving(client)


@pytest.fixture
def full_decode_client(model_path: Path) -> Iterator[TestClient]:
    """A service with fast JPEG decoding turned off."""
    with TestClient(create_app(make_settings(model_path, fast_jpeg=False))) as client:
        yield client


CAMERA_LIKE = Image.new("RGB", (640, 480), "white")  # reduced 1/4 for the 64 px tiny model


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (encode(CAMERA_LIKE, "JPEG", progressive=True), (640, 480)),
        (encode(CAMERA_LIKE.convert("CMYK"), "JPEG"), (640, 480)),
        (encode(CAMERA_LIKE.convert("L"), "JPEG"), (640, 480)),
        (encode(Image.fromarray(np.full((480, 640), 65535, dtype=np.uint16)), "PNG"), (640, 480)),
        (with_orientation(CAMERA_LIKE, 6), (480, 640)),
        (with_orientation(CAMERA_LIKE, 9), (640, 480)),
        (with_orientation(CAMERA_LIKE, 0), (640, 480)),
        (with_orientation(CAMERA_LIKE, "abc"), (640, 480)),
        (with_big_thumbnail(CAMERA_LIKE, Image.new("RGB", (1600, 1200), "red")), (640, 480)),
    ],
    ids=[
        "progressive",
        "CMYK",
        "gray",
        "16-bit-png",
        "exif-6",
        "exif-9",
        "exif-0",
        "exif-text",
        "thumbnail-larger-than-image",
    ],
)
def test_awkward_photos_decode_fast_as_in_full(
    client: TestClient, full_decode_client: TestClient, data: bytes, size: tuple[int, int]
) -> None:
    fast = client.post("/v1/detect", files=upload(data, "photo.jpg"))
    full = full_decode_client.post("/v1/detect", files=upload(data, "photo.jpg"))
    assert fast.status_code == full.status_code == 200, fast.text
    for body in (fast.json(), full.json()):
        assert (body["width"], body["height"]) == size
        assert len(body["detections"]) == 3  # white: the tiny model's three boxes
    assert [d["box"] for d in fast.json()["detections"]] == [
        d["box"] for d in full.json()["detections"]
    ]


def test_truncated_and_mutated_camera_jpegs_are_400_never_500(client: TestClient) -> None:
    photo = encode(Image.effect_noise((640, 480), 60).convert("RGB"), "JPEG", quality=90)
    progressive = encode(
        Image.effect_noise((640, 480), 60).convert("RGB"), "JPEG", progressive=True
    )
    for data in (photo[: len(photo) // 2], progressive[: len(progressive) // 3]):
        body = assert_error(client.post("/v1/detect", files=upload(data, "x")), 400, "bad_image")
        assert "truncated or damaged" in body["detail"]
    rng = random.Random(11)
    statuses: set[int] = set()
    for _ in range(30):
        data = bytearray(rng.choice((photo, progressive, with_orientation(CAMERA_LIKE, 6))))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        response = client.post("/v1/detect", files=upload(bytes(data)))
        assert response.status_code in (200, 400), response.text
        statuses.add(response.status_code)
    assert 200 in statuses
    _still_serving(client)
