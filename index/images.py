"""The catalog's name for the one image decoder, which lives in `training.images` so that
training decodes exactly as ingestion and attribution do (imports go index -> training)."""

from training.images import (  # noqa: F401 - re-exported
    ACCEPTED_FORMATS,
    DEFAULT_MAX_PIXELS,
    ERROR_CODES,
    DecodedImage,
    ImageError,
    decode_image,
    set_decode_budget,
    set_max_concurrent_decodes,
    to_rgb,
)
