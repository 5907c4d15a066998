"""Truncated images are refused as corrupt_image in every accepted format (issue 25, item 3),
including a JPEG whose header declares far more pixels than its bytes hold, which libjpeg fills
with grey without an error."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from training.images import ACCEPTED_FORMATS, ImageError, decode_image, probe_jpeg


def noise(size=(300, 300)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    (image.convert("P") if fmt == "GIF" else image).save(buffer, fmt, **options)
    return buffer.getvalue()


def declaring(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header edited to declare another size; the scan is unchanged."""
    edited = bytearray(data)
    struct.pack_into(">HH", edited, edited.find(b"\xff\xc0") + 5, height, width)
    return bytes(edited)


def test_a_jpeg_declaring_more_pixels_than_it_holds_is_corrupt():
    data = declaring(encoded(noise(), "JPEG", quality=90), 7000, 7000)
    for decode in (decode_image, probe_jpeg):
        with pytest.raises(ImageError) as refused:
            decode(data)
        assert refused.value.code == "corrupt_image" and "declares 7000x7000" in refused.value.message


@pytest.mark.parametrize("fmt", ACCEPTED_FORMATS)
@pytest.mark.parametrize("kept", [0.3, 0.7, 0.95])
def test_every_format_cut_short_is_corrupt(fmt, kept):
    data = encoded(noise(), fmt)
    with pytest.raises(ImageError) as refused:
        decode_image(data[:int(len(data) * kept)])
    assert refused.value.code == "corrupt_image"


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"optimize": True}, {"subsampling": 0},
                                     {"quality": 1}, {"progressive": True, "optimize": True, "quality": 1}])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_whole_jpegs_of_flat_colour_are_not_mistaken_for_truncated(options, mode):
    """The cheapest JPEGs there are (one flat colour, up to 6000 x 6000) still hold a bit a block."""
    for size in [(1, 1), (9, 7), (6000, 6000)]:
        image = Image.new(mode, size, 128 if mode == "L" else (128, 128, 128))
        assert decode_image(encoded(image, "JPEG", **options)).width == size[0]
