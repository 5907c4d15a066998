"""Heads: what turns stored backbone features into the vectors of one search space.

A catalog runs the backbone once per image and keeps the pooled features. Every space's
vectors come from a head applied to those features:

  identity head   L2-normalised raw features (the `style` space); its id is the backbone id
  trained head    an `attrib train` checkpoint's centre + projection (the `content` space);
                  its id is the checkpoint's encoder_id

A head only fits the backbone it was trained on: `load_head` refuses a checkpoint whose
backbone is none of the catalog's (its encoder's, or its copy backbone's), or whose head expects
another feature dimension.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.encoders import Encoder, load_checkpoint
from training.projection import project_features
from training.errors import AttribError, EncoderError
from training.query_views import average_view_embeddings, view_settings

HEAD_CHUNK_ROWS = 8192


class HeadError(AttribError):
    code = "bad_head"
    status = 422


class Head(nn.Module):
    """A space's projection: features (N, in_dim) -> unit float32 vectors (N, dim)."""

    def __init__(self, head_id: str, backbone_id: str, in_dim: int, dim: int,
                 head: nn.Module | None = None, center: torch.Tensor | None = None, head_config: dict | None = None,
                 query_head: nn.Module | None = None):
        super().__init__()
        self.head_id, self.backbone_id, self.in_dim, self.dim = head_id, backbone_id, in_dim, dim
        # (count, AugmentConfig): the views a query is embedded with (training/query_views.py); (0, None): none
        self.query_views = view_settings(head_config)
        self.head = head
        self.query_head = query_head  # a query's embedding from its clean view alone (training/distil.py)
        self.head_config = dict(head_config or {})
        self.register_buffer("center", center if center is not None else torch.zeros(in_dim))
        self.eval()

    @property
    def is_identity(self) -> bool:
        return self.head is None

    @classmethod
    def identity(cls, backbone_id: str, feature_dim: int) -> "Head":
        return cls(backbone_id, backbone_id, feature_dim, feature_dim)

    @classmethod
    def of_encoder(cls, encoder: Encoder) -> "Head":
        """A copy of an encoder's head (the identity head when it has none), on the CPU, without
        its backbone; the encoder itself is left as it was."""
        if encoder.head is None:
            return cls.identity(encoder.backbone_id, encoder.feature_dim)
        center = encoder.center.detach().cpu().clone()
        query_head = None if encoder.query_head is None else copy.deepcopy(encoder.query_head).cpu()
        return cls(encoder.encoder_id, encoder.backbone_id, encoder.feature_dim, encoder.dim,
                   copy.deepcopy(encoder.head).cpu(), center, encoder.head_config, query_head)

    @property
    def self_check(self) -> dict | None:
        """The figures of the head's self-check (training/self_check.py), if it was checked."""
        return self.head_config.get("self_check")

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Map features to unit vectors, in chunks so memory stays bounded."""
        return self._map(features, self.head)

    @torch.inference_mode()
    def _map(self, features: np.ndarray, head: nn.Module | None) -> np.ndarray:
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise HeadError(f"head {self.head_id} expects features of width {self.in_dim}, got {features.shape}",
                            code="head_dim_mismatch")
        out = np.empty((len(features), self.dim), np.float32)
        for start in range(0, len(features), HEAD_CHUNK_ROWS):
            chunk = torch.from_numpy(np.ascontiguousarray(features[start:start + HEAD_CHUNK_ROWS], np.float32))
            out[start:start + len(chunk)] = project_features(chunk, head, self.center).numpy()
        return out


    def apply_query(self, features: np.ndarray, view_features: np.ndarray | None = None) -> np.ndarray:
        """A query's vectors: `features` (N, in_dim) of its clean view and, when the head asks for
        query views, `view_features` (N, V, in_dim) of its V views (`query_view_images`); the result
        is the normalised sum of the head's unit vectors over the clean view and the views. A head
        with a query head maps the clean view through it and needs no views."""
        if self.query_head is not None:
            return self._map(features, self.query_head)
        clean = self.apply(features)
        if view_features is None or self.query_views[0] == 0:
            return clean
        views = np.asarray(view_features)
        if views.ndim != 3 or len(views) != len(clean):
            raise HeadError(f"expected view features (N, V, {self.in_dim}), got {views.shape}", code="head_dim_mismatch")
        projected = self.apply(views.reshape(-1, views.shape[-1])).reshape(len(views), views.shape[1], self.dim)
        return average_view_embeddings(clean, projected)


def load_head(path: str | Path, backbone_id: str, feature_dim: int, others: dict[str, int] | None = None) -> Head:
    """The head of an encoder checkpoint, checked against the catalog's backbone or one of the
    `others` it has configured (backbone id -> feature width: its copy backbone)."""
    try:
        encoder = load_checkpoint(path)
    except EncoderError as exc:
        raise HeadError(exc.message, code="head_unreadable") from exc
    allowed = {backbone_id: feature_dim, **(others or {})}
    if encoder.backbone_id not in allowed:
        raise HeadError(
            f"the head in {path} was trained on backbone {encoder.backbone_id}, but this catalog's "
            f"backbones are {', '.join(allowed)}; train a head on one of them "
            "(`attrib train --from-catalog [--backbone NAME]`), or change ATTRIB_ENCODER and run `attrib reindex`",
            code="backbone_mismatch",
        )
    feature_dim = allowed[encoder.backbone_id]
    if encoder.head is not None and int(encoder.head_config.get("in_dim", -1)) != feature_dim:
        raise HeadError(
            f"the head in {path} expects {encoder.head_config.get('in_dim')}-d features, but the "
            f"catalog's backbone gives {feature_dim}-d features",
            code="head_dim_mismatch",
        )
    head = Head.of_encoder(encoder)
    try:
        head.apply(np.zeros((2, feature_dim), np.float32))
    except (RuntimeError, ValueError) as exc:
        raise HeadError(f"the head in {path} cannot be applied: {exc}", code="head_unreadable") from exc
    return head
