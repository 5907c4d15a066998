"""Derivations for a head's self-check: a family of edits that training's views never make.

Training's views (training/views.py) are crops, flips, Canny sketches, Otsu silhouettes and
photometric changes. A head fitted on them would look good on a check made of the same edits, so
the self-check derives its queries from catalog sources with other edits, in three groups:

  medium   the source's layout in another image's texture and colour: a Fourier amplitude swap
           (Yang and Soatto, *FDA*, CVPR 2020), a pixel-space style transfer (coarse structure in
           the donor's colours and fine texture), the source's shapes as the boundary between two
           of the donor's textures; a 1-bit halftone, an emboss relief, a mosaic
  copy     a rotated, rescaled crop with a pasted patch of another image, or a heavy re-encode
  colour   permuted channels with a gamma curve

Every derivation also gets a mild crop and a JPEG re-encode. A derivation is a deterministic
function of the source's bytes (its sha256), the donor image and the index, so a check is the
same on every run.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps

SIZE = 256
KINDS = ("amplitude", "texture", "fill", "halftone", "emboss", "mosaic", "paste", "reencode", "recolour")


def check_rng(sha256: str, index: int) -> np.random.Generator:
    seed = int(hashlib.sha256(f"selfcheck-v1:{sha256}:{index}".encode()).hexdigest()[:16], 16)
    return np.random.default_rng(seed)


def derive_for_check(image: Image.Image, donor: Image.Image, sha256: str, index: int) -> tuple[str, Image.Image]:
    """(kind, derived image) for one source: a mild crop, one edit of KINDS, a JPEG re-encode."""
    rng = check_rng(sha256, index)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    image = _crop(ImageOps.fit(image.convert("RGB"), (SIZE, SIZE)), rng, 0.6)
    donor = ImageOps.fit(donor.convert("RGB"), (SIZE, SIZE))
    edited = EDITS[kind](image, donor, rng)
    return kind, _jpeg(edited, int(rng.integers(35, 80)))


def _crop(image: Image.Image, rng: np.random.Generator, least: float) -> Image.Image:
    side = float(rng.uniform(least, 1.0))
    w, h = max(16, round(image.width * side)), max(16, round(image.height * side))
    x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
    return image.crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def amplitude(image, donor, rng) -> Image.Image:
    """The image's Fourier phase with the donor's amplitude spectrum, per channel (texture and
    colour of the donor, layout of the image)."""
    mix = float(rng.uniform(0.6, 1.0))
    a, b = np.asarray(image, np.float32), np.asarray(donor, np.float32)
    fa, fb = np.fft.fft2(a, axes=(0, 1)), np.fft.fft2(b, axes=(0, 1))
    magnitude = (1 - mix) * np.abs(fa) + mix * np.abs(fb)
    out = np.real(np.fft.ifft2(magnitude * np.exp(1j * np.angle(fa)), axes=(0, 1)))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def texture(image, donor, rng) -> Image.Image:
    """A pixel-space style transfer: the image's coarse structure (blurred), given the donor's
    colour statistics per channel (AdaIN on pixels, Huang and Belongie, ICCV 2017, without the
    network) and overlaid with the donor's fine texture (its high frequencies)."""
    coarse = np.asarray(image.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 3.0)))), np.float32)
    source = np.asarray(donor, np.float32)
    detail = source - np.asarray(donor.filter(ImageFilter.GaussianBlur(2.0)), np.float32)
    mean, std = coarse.mean((0, 1)), coarse.std((0, 1)) + 1e-3
    styled = (coarse - mean) / std * source.std((0, 1)) + source.mean((0, 1))
    out = styled + float(rng.uniform(0.7, 1.2)) * detail
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def fill(image, donor, rng) -> Image.Image:
    """The image's shapes as the boundary between two textures: its darker side (Otsu threshold of
    the grey image, thickened) filled with the donor, the rest with the donor turned and recoloured."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(image.convert("L").filter(ImageFilter.MinFilter(5)), np.float32)
    mask = grey < (threshold_otsu(grey) if grey.max() > grey.min() else 128)
    inside = np.asarray(donor, np.float32)
    outside = np.asarray(ImageOps.mirror(donor.rotate(90)), np.float32)[..., rng.permutation(3)]
    out = np.where(mask[..., None], inside, outside)
    return Image.fromarray(out.astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))


def halftone(image, donor, rng) -> Image.Image:
    """A 1-bit Floyd-Steinberg halftone at a coarser scale."""
    small = image.resize((SIZE * 2 // int(rng.integers(2, 4)),) * 2, Image.Resampling.BILINEAR)
    return small.convert("L").convert("1").convert("RGB").resize((SIZE, SIZE), Image.Resampling.NEAREST)


def emboss(image, donor, rng) -> Image.Image:
    """A grey relief, tinted."""
    relief = ImageOps.autocontrast(image.convert("L").filter(ImageFilter.EMBOSS))
    tint = tuple(int(v) for v in rng.integers(120, 256, 3))
    return ImageOps.colorize(relief, (0, 0, 0), tint)


def mosaic(image, donor, rng) -> Image.Image:
    block = int(rng.integers(6, 13))
    small = image.resize((SIZE // block,) * 2, Image.Resampling.BOX)
    return small.resize((SIZE, SIZE), Image.Resampling.NEAREST)


def paste(image, donor, rng) -> Image.Image:
    """A rotated, rescaled copy with a patch of the donor pasted over a corner region."""
    turned = image.rotate(float(rng.uniform(-20, 20)), Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))
    side = int(SIZE * rng.uniform(0.25, 0.4))
    patch = donor.resize((side, side), Image.Resampling.BILINEAR)
    turned.paste(patch, (int(rng.integers(0, SIZE - side)), int(rng.integers(0, SIZE - side))))
    return turned


def reencode(image, donor, rng) -> Image.Image:
    """Downscaled, sharpened and re-encoded at very low quality."""
    small = image.resize((int(SIZE * rng.uniform(0.3, 0.5)),) * 2, Image.Resampling.BILINEAR)
    return _jpeg(small, int(rng.integers(8, 20))).resize((SIZE, SIZE), Image.Resampling.BICUBIC).filter(ImageFilter.SHARPEN)


def recolour(image, donor, rng) -> Image.Image:
    channels = image.split()
    order = rng.permutation(3)
    gamma = float(rng.uniform(0.5, 2.0))
    table = [round(255 * (v / 255) ** gamma) for v in range(256)] * 3
    return Image.merge("RGB", [channels[i] for i in order]).point(table)


EDITS = {"amplitude": amplitude, "texture": texture, "fill": fill, "halftone": halftone, "emboss": emboss,
         "mosaic": mosaic, "paste": paste, "reencode": reencode, "recolour": recolour}
