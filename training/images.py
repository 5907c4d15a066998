"""The one image decoder: untrusted bytes -> upright 8-bit RGB, for training and serving alike.

Ingestion, attribution, catalog re-embedding and training (`training.data.load_rgb`) all decode
through `decode_image`, so an image means the same pixels everywhere.

Accepted formats (Pillow is opened with this allow-list; no other parser ever sees the bytes):
JPEG (including MPO), PNG (including APNG), WebP, GIF, BMP and TIFF. Animated images are read by
their first frame; multi-page TIFFs by their first page.

Every failure is an `ImageError` with a stable code; nothing else escapes `decode_image`:

  empty_file       400  zero bytes
  not_an_image     415  not one of the accepted formats (SVG, PDF, HTML, DDS, AVIF, PSD, ICO, ...)
  corrupt_image    400  an accepted format (by its header or its leading bytes), but truncated,
                        damaged or a variant that cannot be read; a JPEG with fewer bytes than
                        its declared size needs (training/jpeg_scan.py)
  image_too_large  413  more pixels than ATTRIB_MAX_PIXELS (default 50,000,000; decompression
                        bombs), counted as declared by the header, or out of memory decoding

Conversion to RGB: EXIF orientation is applied; alpha (RGBA, LA, PA, palette transparency) is
laid over white; CMYK, greyscale and palette images are converted by Pillow; 16-bit and other
wide greyscale (I;16*, I, F) keeps values up to 255 as they are and otherwise scales from 16-bit
full scale (or from the image's peak if that is higher), in strips, so no full-size float copy is
ever made. Non-finite float samples count as 0.

Size: a decoded image keeps its aspect ratio and a short side of at least `min_side` pixels
(default 512, twice the largest model input), or all of its pixels where it has fewer. JPEGs are
reduced while they are decoded (libjpeg's DCT scaling by 1/2, 1/4 or 1/8, Pillow's `draft`), so a
50-megapixel photo costs a 0.8-megapixel decode; other formats are decoded whole and then reduced
by a whole factor (`Image.reduce`). `width` and `height` stay the image's own, upright size.

Memory: a decode first reserves the pixels it will decode from a process-wide budget
(training/decode_budget.py, ATTRIB_DECODE_BUDGET_PIXELS) and waits its turn when they are not
free; at most `max_concurrent_decodes()` decodes run at once (ATTRIB_MAX_CONCURRENT_DECODES). One
decode holds at most about 10 bytes per decoded pixel (source, converted copy, RGB result;
measured 7-10 on 49-megapixel images in every mode), so the decoders hold at most about 10 bytes
times the budget, and the freed memory is handed back after each large decode (glibc).
`benchmarks/decode_flood.py` measures one process's decodes, `benchmarks/memory_burst.py` a
server's RSS under a burst of large uploads.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from training.decode_budget import DecodeBudget
from training.errors import AttribError
from training.heap import return_freed_memory
from training.jpeg_scan import missing_data

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_CONCURRENT_DECODES = 4
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ERROR_CODES = {"empty_file": 400, "not_an_image": 415, "corrupt_image": 400, "image_too_large": 413}
DECODE_MIN_SIDE = 512
# Leading bytes of the accepted formats: a file that starts like one but cannot be opened is corrupt.
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",), "GIF": (b"GIF87a", b"GIF89a"), "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
_STRIP_PIXELS = 1 << 20


class ImageError(AttribError):
    code = "corrupt_image"
    status = 400

    def __init__(self, message: str, *, code: str = "corrupt_image", status: int | None = None):
        super().__init__(message, code=code, status=status or ERROR_CODES[code])


@dataclass
class DecodedImage:
    image: Image.Image
    sha256: str
    format: str
    width: int
    height: int


_slots = threading.BoundedSemaphore(DEFAULT_MAX_CONCURRENT_DECODES)
_slot_count = DEFAULT_MAX_CONCURRENT_DECODES
_budget = DecodeBudget()
# Freed memory is given back after decoding an image this large, or a failed decode (which may have
# allocated what the header declared). Below it the trim cost more than the decode's buffers: it
# walks the whole heap, 0.2-0.3 ms in a loaded server, a third of a typical photo's decode.
TRIM_FROM_PIXELS = 1_000_000


def set_max_concurrent_decodes(count: int) -> None:
    """Allow at most `count` decodes at once in this process (decodes already running finish)."""
    global _slots, _slot_count
    if count < 1:
        raise ValueError(f"max concurrent decodes must be at least 1, not {count}")
    if count != _slot_count:
        _slots, _slot_count = threading.BoundedSemaphore(count), count


def max_concurrent_decodes() -> int:
    return _slot_count


def set_decode_budget(pixels: int) -> None:
    """Allow at most `pixels` decoded pixels in this process's decoders at once (a larger image
    decodes alone)."""
    global _budget
    if pixels != _budget.capacity:
        _budget = DecodeBudget(pixels)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DECODE_MIN_SIDE) -> DecodedImage:
    """Upright RGB of untrusted image bytes, reduced to a short side of at least `min_side`;
    raises only `ImageError` (codes above)."""
    if not data:
        raise ImageError("the file is empty (0 bytes)", code="empty_file")
    with _slots:
        image = _open(data, max_pixels)
        width, height = _upright_size(image)
        if image.format in ("JPEG", "MPO") and min(image.size) >= 2 * min_side:
            image.draft(None, (min_side, min_side))
        decoded_pixels = image.width * image.height
        rgb = None
        try:
            with _budget.reserve(decoded_pixels):
                rgb = _decode(image, min_side)
        finally:
            if rgb is None or width * height >= TRIM_FROM_PIXELS:
                return_freed_memory()  # glibc keeps freed memory in per-thread arenas otherwise
    return DecodedImage(rgb, hashlib.sha256(data).hexdigest(), (image.format or "unknown").lower(), width, height)


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """The image's size once its EXIF orientation is applied."""
    try:
        turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - unreadable EXIF: exif_transpose will not turn it either
        turned = False
    return (image.height, image.width) if turned else image.size


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    factor = min(image.size) // min_side
    return image.reduce(factor) if factor >= 2 else image


def probe_jpeg(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int] | None:
    """(sha256, width, height) of a JPEG that a device decoder (nvJPEG) reads exactly as Pillow
    does here: 8-bit RGB or greyscale, upright (no EXIF rotation), not reduced while decoding. None for any other image,
    which goes through `decode_image`. Checks the header as `decode_image` does (raises
    `ImageError`); the pixels are not decoded."""
    if not data:
        raise ImageError("the file is empty (0 bytes)", code="empty_file")
    image = _open(data, max_pixels)
    try:
        upright = image.getexif().get(0x0112, 1) == 1
    except Exception:  # noqa: BLE001 - unreadable EXIF: leave the file to the full decoder
        upright = False
    if image.format != "JPEG" or image.mode not in ("RGB", "L") or not upright:
        return None
    if min(image.size) >= 2 * DECODE_MIN_SIDE:  # decode_image reduces it while decoding
        return None
    return hashlib.sha256(data).hexdigest(), image.width, image.height


def _decode(image: Image.Image, min_side: int) -> Image.Image:
    fmt = (image.format or "unknown").upper()
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return _reduce(to_rgb(image), min_side)
    except MemoryError as exc:
        raise _out_of_memory() from exc
    except Exception as exc:  # noqa: BLE001 - the boundary: whatever a codec raises is this file's fault
        raise ImageError(f"the {fmt} image is truncated or corrupt: {_describe(exc)}") from exc


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as exc:
        claimed = _claimed_format(data)
        if claimed:
            raise ImageError(f"the file starts like a {claimed} image, but its header is damaged") from exc
        raise ImageError(
            f"the file is not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})",
            code="not_an_image",
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning, where it is an error
        raise ImageError(f"the image declares too many pixels: {exc}", code="image_too_large") from exc
    except MemoryError as exc:
        raise _out_of_memory() from exc
    except Exception as exc:  # noqa: BLE001 - the boundary, as in _decode
        raise ImageError(f"the image header is corrupt: {_describe(exc)}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"the image declares {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}",
            code="image_too_large",
        )
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    if image.format in ("JPEG", "MPO") and (problem := missing_data(data)):
        raise ImageError(problem)  # libjpeg would fill the missing blocks with grey and say nothing
    return image


def _claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for fmt, starts in _SIGNATURES.items() if data.startswith(starts)), None)


def _out_of_memory() -> ImageError:
    return ImageError("the image needs more memory to decode than is available", code="image_too_large")


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; wide greyscale is scaled down, alpha is laid on white."""
    if image.mode in _WIDE_MODES:
        return Image.fromarray(_wide_to_l(image)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _wide_to_l(image: Image.Image) -> np.ndarray:
    """8-bit greyscale of an I;16*, I or F image, a strip of rows at a time."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def strip(top: int, bottom: int) -> np.ndarray:
        values = np.asarray(image.crop((0, top, width, bottom)))
        if values.dtype.kind == "f":
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(values, 0, None)

    peak = max(float(strip(top, bottom).max()) for top, bottom in strips)
    full_scale = 255 if peak <= 255 else 65535 if peak <= 65535 else peak
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom in strips:
        values = strip(top, bottom)
        if values.dtype.kind == "f":
            out[top:bottom] = np.round(values.astype(np.float64) / full_scale * 255.0)
        else:  # integer rounding, half up: no ties at 255 or 65535 full scale
            scale = int(full_scale)
            out[top:bottom] = (values.astype(np.int64) * 510 + scale) // (2 * scale)
    return out
