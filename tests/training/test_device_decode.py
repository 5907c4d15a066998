"""The device-decoding path (nvJPEG on CUDA), run here on the CPU through the same calls."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.device_decode import decode_jpegs, jpeg_features
from training.images import ImageError, decode_image, probe_jpeg


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_only_plain_upright_jpegs_go_to_the_device(photos):
    plain = photos[0].read_bytes()
    sha, width, height = probe_jpeg(plain)
    decoded = decode_image(plain)
    assert (sha, width, height) == (decoded.sha256, decoded.width, decoded.height)
    grey = jpeg(Image.new("L", (40, 30), 128))
    assert probe_jpeg(grey)[1:] == (40, 30)

    rotated = Image.Exif()
    rotated[0x0112] = 6
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    for other in (jpeg(Image.new("RGB", (40, 30)), exif=rotated.tobytes()),
                  jpeg(Image.new("CMYK", (40, 30))), png.getvalue()):
        assert probe_jpeg(other) is None  # Pillow decodes these


def test_the_header_is_checked_as_the_decoder_checks_it(photos):
    with pytest.raises(ImageError) as empty:
        probe_jpeg(b"")
    assert empty.value.code == "empty_file"
    with pytest.raises(ImageError) as large:
        probe_jpeg(photos[0].read_bytes(), max_pixels=1000)
    assert large.value.code == "image_too_large"
    with pytest.raises(ImageError) as damaged:
        probe_jpeg(b"\xff\xd8\xff" + b"\x00" * 100)
    assert damaged.value.code == "corrupt_image"


def test_a_bad_file_fails_alone_in_its_batch(photos):
    good = photos[1].read_bytes()
    images = decode_jpegs([photos[0].read_bytes()[:3000], good], torch.device("cpu"))
    assert images[0] is None
    assert tuple(images[1].shape) == (3, decode_image(good).height, decode_image(good).width)


def test_device_features_agree_with_pillows(encoder, photos):
    datas = [p.read_bytes() for p in photos[:8]]
    features, ok = jpeg_features(encoder, datas)
    expected = encoder.embed_features([decode_image(d).image for d in datas])
    cosine = (features * expected).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(expected, axis=1)
    assert all(ok)
    assert cosine.min() >= 0.99
