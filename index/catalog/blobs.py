"""Content-addressed store of original images (and their thumbnails) under ATTRIB_HOME."""

from __future__ import annotations

import io
from pathlib import Path

from index.images import decode_image
from training.fileio import atomic_write_bytes

THUMBNAIL_SIZE = 256


class BlobStore:
    def __init__(self, root: str | Path, thumbnails: str | Path):
        self.root = Path(root)
        self.thumbnails = Path(thumbnails)

    @classmethod
    def under(cls, home: str | Path) -> "BlobStore":
        """The store of an ATTRIB_HOME."""
        return cls(Path(home) / "blobs", Path(home) / "thumbnails")

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, sha256: str, data: bytes) -> Path:
        """Store bytes under their hash; writing the same content twice is a no-op."""
        path = self.path(sha256)
        if not path.is_file():
            atomic_write_bytes(path, data)
        return path

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        for path in (self.path(sha256), self.thumbnail_path(sha256)):
            path.unlink(missing_ok=True)

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbnails / sha256[:2] / f"{sha256}_{THUMBNAIL_SIZE}.jpg"

    def thumbnail(self, sha256: str) -> Path:
        """A cached JPEG whose long side is at most 256 px, made on first request."""
        path = self.thumbnail_path(sha256)
        if not path.is_file():
            image = decode_image(self.read(sha256), max_pixels=2**62).image
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            atomic_write_bytes(path, buffer.getvalue())
        return path
