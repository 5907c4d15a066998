import io

import numpy as np
import pytest
from PIL import Image

from index.images import ImageError, decode_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    array = np.stack([np.tile(x, (height, 1))] * 3, axis=-1)
    array[..., 1] = 40
    return Image.fromarray(array, "RGB")


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (b"%PDF-1.4 not an image at all", "not_an_image"),
    ],
)
def test_bad_bytes_get_a_stable_code(data, code):
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.code == code


def test_decompression_bomb_is_refused_before_decoding(bomb_png):
    with pytest.raises(ImageError, match="pixels") as caught:
        decode_image(bomb_png)
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_corrupt(fmt):
    data = encode(gradient(256, 256), fmt)
    with pytest.raises(ImageError) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.code == "corrupt_image"
    assert fmt in caught.value.message


def test_pixel_limit_is_configurable():
    data = encode(gradient(100, 100), "PNG")
    assert decode_image(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageError, match="10,000 pixels, over the limit of 9,999"):
        decode_image(data, max_pixels=9_999)


@pytest.mark.parametrize(
    "image, fmt",
    [
        (gradient().convert("CMYK"), "JPEG"),
        (gradient().convert("P"), "PNG"),
        (gradient().convert("RGBA"), "PNG"),
        (gradient().convert("L"), "PNG"),
    ],
)
def test_other_modes_become_rgb(image, fmt):
    decoded = decode_image(encode(image, fmt))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (64, 48)


def test_16_bit_greyscale_is_scaled_not_clipped():
    array = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    assert decoded.image.mode == "RGB"
    assert abs(int(np.asarray(decoded.image)[0, 0, 0]) - 127) <= 1


def test_animated_gif_uses_first_frame():
    red, blue = Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    pixel = np.asarray(decode_image(data).image)[5, 5]
    assert pixel[0] > 200 and pixel[2] < 50


def test_exif_rotation_is_applied():
    image = gradient(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.image.size == (48, 64)


def test_hash_and_format_are_reported():
    data = encode(gradient(), "PNG")
    decoded = decode_image(data)
    assert decoded.format == "png"
    assert len(decoded.sha256) == 64 and decoded.sha256 == decode_image(data).sha256
