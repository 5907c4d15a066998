import io
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from training import images
from training.data import DataError, load_rgb
from training.images import ACCEPTED_FORMATS, ERROR_CODES, ImageError, decode_image, to_rgb


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    array = np.stack([np.tile(x, (height, 1))] * 3, axis=-1)
    array[..., 1] = 40
    return Image.fromarray(array, "RGB")


def rotated_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


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
    assert caught.value.status == ERROR_CODES[code]


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


def test_the_poisoned_dds_of_issue_11_is_not_an_image(poisoned_dds):
    data = poisoned_dds
    with pytest.raises(NotImplementedError):  # what an unguarded Pillow raises for it
        Image.open(io.BytesIO(data)).load()
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert (caught.value.code, caught.value.status) == ("not_an_image", 415)
    assert all(name in caught.value.message for name in ACCEPTED_FORMATS)


@pytest.mark.parametrize(
    "fmt, mode", [("DDS", "RGB"), ("TGA", "RGB"), ("ICO", "RGB"), ("SPIDER", "F"), ("AVIF", "RGB"), ("PCX", "RGB"),
                  ("PPM", "RGB"), ("SGI", "RGB"), ("QOI", "RGB"), ("XBM", "1")],
)
def test_formats_outside_the_allow_list_are_refused_unparsed(fmt, mode):
    data = encode(Image.new(mode, (32, 32)), fmt)
    assert Image.open(io.BytesIO(data)).format is not None  # Pillow itself would read it
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert (caught.value.code, caught.value.status) == ("not_an_image", 415)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_accepted_format_decodes(fmt):
    decoded = decode_image(encode(gradient(), fmt))
    assert (decoded.format, decoded.image.mode, decoded.image.size) == (fmt.lower(), "RGB", (64, 48))


def _half_transparent() -> Image.Image:
    image = gradient().convert("RGBA")
    image.putalpha(Image.fromarray(np.where(np.arange(64) < 32, 0, 255).astype(np.uint8)[None].repeat(48, 0)))
    return image


def _transparent_palette() -> Image.Image:
    image = gradient().convert("P")
    image.info["transparency"] = int(np.asarray(image)[0, 0])
    return image


def _sixteen_bit() -> Image.Image:
    ramp = np.linspace(0, 65535, 64).astype(np.uint16)
    return Image.fromarray(np.tile(ramp, (48, 1)))


# Files that training and serving once decoded differently; `probe` checks what the result means.
PARITY_CASES = {
    "rgba": (_half_transparent, "PNG", {}, lambda a: (a[:, :32] == 255).all() and (a[:, 40:] != 255).any()),
    "rgba-clear": (lambda: Image.new("RGBA", (64, 48), (0, 0, 0, 0)), "PNG", {}, lambda a: (a == 255).all()),
    "la": (lambda: Image.new("LA", (64, 48), (10, 0)), "PNG", {}, lambda a: (a == 255).all()),
    "pa": (lambda: Image.new("PA", (64, 48), (3, 0)), "TIFF", {}, lambda a: (a == 255).all()),
    "palette-transparency": (_transparent_palette, "PNG", {}, lambda a: (a[0, 0] == 255).all()),
    "16-bit": (_sixteen_bit, "PNG", {}, lambda a: a[0, 0, 0] == 0 and a[0, -1, 0] == 255 and 120 < a[0, 32, 0] < 135),
    "cmyk": (lambda: gradient().convert("CMYK"), "JPEG", {}, lambda a: a.shape == (48, 64, 3)),
    "exif-rotated": (gradient, "JPEG", {"exif": rotated_exif(6)}, lambda a: a.shape == (64, 48, 3)),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_training_and_serving_decode_identically(case, tmp_path):
    make, fmt, options, probe = PARITY_CASES[case]
    path = tmp_path / f"{case}.{fmt.lower()}"
    path.write_bytes(encode(make(), fmt, **options))
    served = decode_image(path.read_bytes()).image
    trained = load_rgb(path)
    assert served.mode == trained.mode == "RGB"
    assert np.array_equal(np.asarray(served), np.asarray(trained))
    assert probe(np.asarray(served))
    # what training used to do (`.convert("RGB")` after EXIF transpose) differs for alpha and 16 bits
    if case in ("rgba-clear", "la", "16-bit"):
        assert not np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(served))


def test_training_reports_unreadable_files_with_the_decoder_code(tmp_path, poisoned_dds):
    path = tmp_path / "poisoned.png"
    path.write_bytes(poisoned_dds)
    with pytest.raises(DataError) as caught:
        load_rgb(path)
    assert caught.value.code == "not_an_image" and "poisoned.png" in caught.value.message


def float_reference(array: np.ndarray) -> np.ndarray:
    """The earlier full-image float64 conversion, kept as the reference for wide modes."""
    array = np.clip(np.nan_to_num(array.astype(np.float64), nan=0, posinf=0, neginf=0), 0, None)
    peak = float(array.max())
    full_scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    return (array / full_scale * 255.0).round().astype(np.uint8)


@pytest.mark.parametrize(
    "dtype, high",
    [(np.uint16, 255), (np.uint16, 65535), (np.int32, 255), (np.int32, 65535), (np.int32, 2**31 - 1),
     (np.float32, 200.0), (np.float32, 60000.0), (np.float32, 1e9)],
)
def test_wide_modes_scale_like_the_float_reference(dtype, high, monkeypatch):
    monkeypatch.setattr(images, "_STRIP_PIXELS", 500)  # several strips, one of them partial
    rng = np.random.default_rng(7)
    array = (rng.random((37, 53)) * high).astype(dtype)
    if dtype is np.int32:
        array[0, :5] = -1000
    if dtype is np.float32:
        array[1, :3] = [np.nan, np.inf, -np.inf]
    image = Image.fromarray(array)
    assert image.mode in ("I;16", "I", "F")
    got = np.asarray(to_rgb(image))
    want = float_reference(array)
    assert np.array_equal(got[..., 0], want) and np.array_equal(got[..., 0], got[..., 2])


def test_out_of_memory_while_decoding_is_image_too_large():
    """A real allocation failure: the decode runs under an address-space limit."""
    script = f"""
import io, resource, sys
sys.path.insert(0, {str(images.__file__.rsplit('/training/', 1)[0])!r})
from PIL import Image
from training.images import ImageError, decode_image
buffer = io.BytesIO()
Image.new("RGB", (8000, 8000)).save(buffer, "PNG")
data = buffer.getvalue()
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + 100 * 2**20, resource.RLIM_INFINITY))
try:
    decode_image(data, max_pixels=10**9)
except ImageError as exc:
    print(exc.code)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "image_too_large", done.stderr


def test_concurrent_decodes_are_bounded():
    data = encode(gradient(), "PNG")
    images.set_max_concurrent_decodes(2)
    try:
        slots = images._slots
        assert slots.acquire(timeout=1) and slots.acquire(timeout=1)  # both slots taken
        finished = threading.Event()
        worker = threading.Thread(target=lambda: (decode_image(data), finished.set()))
        worker.start()
        assert not finished.wait(0.3), "a third decode ran while two were in progress"
        slots.release()
        assert finished.wait(10)
        slots.release()
        worker.join()
    finally:
        images.set_max_concurrent_decodes(images.DEFAULT_MAX_CONCURRENT_DECODES)
    with pytest.raises(ValueError):
        images.set_max_concurrent_decodes(0)


@pytest.mark.parametrize(
    "image, fmt",
    [
        (gradient().convert("CMYK"), "JPEG"),
        (gradient().convert("P"), "PNG"),
        (gradient().convert("RGBA"), "PNG"),
        (gradient().convert("L"), "PNG"),
        (gradient().convert("1"), "BMP"),
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
    decoded = decode_image(encode(gradient(64, 48), "JPEG", exif=rotated_exif(6)))
    assert decoded.image.size == (48, 64)


def test_hash_and_format_are_reported():
    data = encode(gradient(), "PNG")
    decoded = decode_image(data)
    assert decoded.format == "png"
    assert len(decoded.sha256) == 64 and decoded.sha256 == decode_image(data).sha256
