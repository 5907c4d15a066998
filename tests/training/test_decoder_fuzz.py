"""Decoder fuzz test: mutated real JPEG, PNG, WebP, GIF, TIFF and BMP files never raise anything
but an `ImageError` with a documented code. Fixed seed, a fixed number of mutants (seconds).

Corrupt files make Pillow warn (bad EXIF, bombs over its own limit); the warnings are expected."""

from __future__ import annotations

import io
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from training.images import ERROR_CODES, ImageError, decode_image

SEED = 20261129
MUTANTS_PER_FILE = 1000
MAX_PIXELS = 1_000_000
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")  # mutated headers may declare big images; keep every decode small


def seeds(photos) -> dict[str, list[bytes]]:
    """Three real photos, shrunk, each encoded in every fuzzed format (GIF also animated)."""
    out: dict[str, list[bytes]] = {fmt: [] for fmt in FORMATS}
    for path in photos[300:303]:
        image = Image.open(path).convert("RGB")
        image.thumbnail((96, 96))
        for fmt, options in (("JPEG", {"quality": 80, "exif": _exif()}), ("PNG", {}), ("WEBP", {"quality": 70}),
                             ("GIF", {}), ("TIFF", {"compression": "tiff_lzw"}), ("BMP", {})):
            out[fmt].append(_encode(image, fmt, **options))
        out["PNG"].append(_encode(image.convert("RGBA"), "PNG"))
        out["GIF"].append(_encode(image, "GIF", save_all=True, append_images=[image.rotate(90)], duration=40))
    return out


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# -- mutations: each takes (rng, data) and returns new bytes ----------------------------------


def flip_bytes(rng: np.random.Generator, data: bytes) -> bytes:
    out = bytearray(data)
    span = 64 if rng.random() < 0.5 else len(out)  # half of them hit the header
    for position in rng.integers(0, min(span, len(out)), size=int(rng.integers(1, 9))):
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def truncate(rng: np.random.Generator, data: bytes) -> bytes:
    return data[: int(rng.integers(1, len(data)))]


def insert_chunk(rng: np.random.Generator, data: bytes) -> bytes:
    """Random bytes, or a well-formed chunk of the format with random content, somewhere inside."""
    body = rng.bytes(int(rng.integers(1, 300)))
    if data.startswith(b"\x89PNG"):
        kind = bytes(rng.choice(list(b"abcdefghIHDRPLTEtRNSzTXtiCCPacTLfcTLIDAT"), 4).tolist())
        body = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    elif data.startswith(b"\xff\xd8"):
        body = bytes([0xFF, int(rng.integers(0xC0, 0xFF))]) + struct.pack(">H", len(body) + 2) + body
    position = int(rng.integers(0, len(data)))
    return data[:position] + body + data[position:]


def edit_header(rng: np.random.Generator, data: bytes) -> bytes:
    """Overwrite a 1-4 byte field in the first 40 bytes (sizes, depths, colour types, flags) with
    an extreme or random value; for PNG, fix the IHDR checksum so the edit reaches the decoder."""
    out = bytearray(data)
    width = int(rng.choice([1, 2, 4]))
    position = int(rng.integers(0, min(40, len(out) - width)))
    value = rng.choice([0, 1, 0xFF, 0x7F, 0x80, int(rng.integers(0, 256))])
    out[position : position + width] = bytes([int(value)] * width)
    if out.startswith(b"\x89PNG") and out[12:16] == b"IHDR":
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def repeat_slice(rng: np.random.Generator, data: bytes) -> bytes:
    start = int(rng.integers(0, len(data)))
    end = min(len(data), start + int(rng.integers(1, 512)))
    return data[:end] + data[start:end] * int(rng.integers(1, 4)) + data[end:]


# Magic numbers of formats Pillow can read but the decoder must not parse.
FOREIGN_MAGIC = (b"DDS |\x00\x00\x00", b"8BPS\x00\x01", b"\x00\x00\x01\x00\x01\x00", b"qoif", b"\x01\xda\x01\x01",
                 b"P6\n", b"\x0a\x05\x01\x08", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"FUJIFILMCCD-RAW",
                 b"\x00\x00\x00\x1cftypavif", b"gimp xcf ", b"%!PS-Adobe-3.0 EPSF", b"icns")


def foreign_magic(rng: np.random.Generator, data: bytes) -> bytes:
    magic = FOREIGN_MAGIC[int(rng.integers(0, len(FOREIGN_MAGIC)))]
    return magic + data[len(magic) if rng.random() < 0.5 else 0 :]


MUTATIONS = (flip_bytes, truncate, insert_chunk, edit_header, repeat_slice, foreign_magic)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning", "ignore::UserWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_images_only_raise_documented_image_errors(photos, fmt):
    rng = np.random.default_rng([SEED, ord(fmt[0]), len(fmt)])
    outcomes: Counter = Counter()
    for original in seeds(photos)[fmt]:
        decode_image(original, MAX_PIXELS)  # every seed file itself is readable
        for _ in range(MUTANTS_PER_FILE):
            mutate = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
            data = mutate(rng, original)
            try:
                decode_image(data, MAX_PIXELS)
            except ImageError as exc:
                assert exc.code in ERROR_CODES, (mutate.__name__, exc.code, exc.message)
                assert exc.status == ERROR_CODES[exc.code] and exc.message
                outcomes[exc.code] += 1
            except BaseException as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{mutate.__name__} of a {fmt} let {type(exc).__name__}: {exc} escape decode_image")
            else:
                outcomes["decoded"] += 1
    # the mutants reach deep into the codec: some still decode and some are refused as corrupt
    assert outcomes["decoded"] > 0 and outcomes["corrupt_image"] > 0, outcomes
