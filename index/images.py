"""Decode and validate untrusted image bytes into an upright RGB image.

Every failure is an `ImageError` with a stable code, so the CLI and the HTTP API report the
same problem the same way:

  empty_file      zero bytes
  not_an_image    Pillow does not recognise the format
  corrupt_image   recognised, but truncated or damaged
  image_too_large declares more pixels than allowed (decompression bomb)

Animated images (GIF, WebP, APNG) are attributed by their first frame. CMYK, 16-bit, palette,
greyscale and alpha images are converted to RGB; EXIF orientation is applied.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from training.errors import AttribError

DEFAULT_MAX_PIXELS = 50_000_000


class ImageError(AttribError):
    code = "invalid_image"
    status = 400


@dataclass
class DecodedImage:
    image: Image.Image
    sha256: str
    format: str
    width: int
    height: int


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    if not data:
        raise ImageError("the file is empty (0 bytes)", code="empty_file")
    image = _open(data, max_pixels)
    fmt = (image.format or "unknown").lower()
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the {fmt.upper()} image is truncated or corrupt: {exc}", code="corrupt_image") from exc
    return DecodedImage(rgb, hashlib.sha256(data).hexdigest(), fmt, rgb.width, rgb.height)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageError(
                "the file is not an image in a format Pillow can read", code="not_an_image", status=415
            ) from exc
        raise ImageError(f"the image declares too many pixels: {exc}", code="image_too_large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image header is corrupt: {exc}", code="corrupt_image") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"the image declares {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}",
            code="image_too_large",
        )
    if width == 0 or height == 0:
        raise ImageError(f"the image has no pixels ({width}x{height})", code="corrupt_image")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; 16-bit greyscale is scaled down, alpha is laid on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.clip(np.asarray(image, dtype=np.float64), 0, None)
        peak = float(array.max())
        full_scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        array = (array / full_scale * 255.0).round().astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
