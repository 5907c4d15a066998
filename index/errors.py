"""The catalog's error types, in a module of their own so that light commands (keys) can raise
them without importing the encoder stack."""

from __future__ import annotations

from training.errors import AttribError


class CatalogError(AttribError):
    code = "catalog_error"
    status = 409


class StoreError(AttribError):
    """A vector store (index/stores) failed, is misconfigured or cannot be reached; `code` says which."""

    code = "vector_store_error"
    status = 503


class NotFoundError(AttribError):
    code = "not_found"
    status = 404
