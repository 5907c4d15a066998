"""Training and evaluation inputs: image folders, benchmark manifests, views, cached features.

- A benchmark manifest is a CSV with columns `path,role,concept` (paths relative to the CSV);
  `role` is `query`, `source` or `distractor`.
- Training input is unlabeled: folders and manifests give *anchor* images (augmented views) and
  *negative-only* images (a manifest's distractors, used un-augmented).
- Augmented views are made by `training.views`.
- Backbone features are cached on disk under `<cache>/v2/<backbone key>/clean/` (the evaluation
  view: resize + centre crop) and `<cache>/v2/<backbone key>/views-<recipe key>/` (augmented views),
  one `.npy` file per image sha256.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from training.config import AugmentConfig
from training.encoder_ids import content_hash
from training.errors import AttribError
from training.fileio import atomic_write
from training.images import ImageError, decode_image
from training.views import ViewMaker, recipe_key, view_rng

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
ROLES = ("query", "source", "distractor")


class DataError(AttribError):
    code = "bad_input"


# -- manifests and folders ---------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    role: str
    concept: str


def read_manifest(path: str | Path, check_files: bool = True) -> list[ManifestRow]:
    """Rows of a `path,role,concept` benchmark CSV, with paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "role", "concept"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"manifest {path} lacks column(s) {', '.join(sorted(missing))}")
        rows = [_manifest_row(path, number, raw) for number, raw in enumerate(reader, start=2)]
    if not rows:
        raise DataError(f"manifest {path} has no rows")
    if check_files:
        absent = [row.path for row in rows if not row.path.is_file()]
        if absent:
            raise DataError(f"manifest {path}: {len(absent)} image(s) not found, first {absent[0]}")
    return rows


def _manifest_row(manifest: Path, number: int, raw: dict) -> ManifestRow:
    role, concept, rel = (raw.get("role") or "").strip(), (raw.get("concept") or "").strip(), raw.get("path")
    if role not in ROLES:
        raise DataError(f"{manifest}:{number}: role {role!r} is not one of {', '.join(ROLES)}")
    if role != "distractor" and not concept:
        raise DataError(f"{manifest}:{number}: a {role} row needs a concept")
    if not rel:
        raise DataError(f"{manifest}:{number}: empty path")
    return ManifestRow(manifest.parent / rel.strip(), role, concept)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@dataclass
class TrainingImages:
    anchors: list[Path]  # catalog images: augmented views, anchors of the alignment
    negatives: list[Path]  # negative-only images, used un-augmented
    pool: list[Path] = dataclasses.field(default_factory=list)  # unlabeled synthetic images (queries)


def collect_training_images(
    inputs: Iterable[str | Path], catalog_images: list[Path] | None = None, negative_inputs: Iterable[str | Path] = (),
    pool_inputs: Iterable[str | Path] = (), pool_images: list[Path] | None = None,
) -> TrainingImages:
    """Catalog anchors, pool anchors and negative-only images. Folders, images and the catalog give
    catalog anchors; a manifest's `source` rows are catalog anchors, its `query` rows pool images
    and its `distractor` rows negatives (labels are never read). Every image of `pool_inputs` is a
    pool image and every image of `negative_inputs` negative-only."""
    anchors: dict[Path, None] = {}
    negatives: dict[Path, None] = {}
    pool: dict[Path, None] = {}
    for item in negative_inputs:
        negatives.update(dict.fromkeys(_all_images(item)))
    for item in pool_inputs:
        pool.update(dict.fromkeys(_all_images(item)))
    pool.update(dict.fromkeys(Path(p) for p in pool_images or []))
    for item in inputs:
        item = Path(item)
        if item.is_file() and item.suffix.lower() == ".csv":
            for row in read_manifest(item):
                {"distractor": negatives, "query": pool, "source": anchors}[row.role][row.path] = None
        else:
            anchors.update(dict.fromkeys(_all_images(item)))
    anchors.update(dict.fromkeys(Path(p) for p in catalog_images or []))
    pool = {p: None for p in pool if p not in anchors}
    negatives = {p: None for p in negatives if p not in anchors and p not in pool}
    return TrainingImages(list(anchors), list(negatives), list(pool))


def _all_images(item: str | Path) -> list[Path]:
    """Every image of a folder (recursive), an image file, or a manifest (any role)."""
    item = Path(item)
    if item.is_dir():
        found = list_images(item)
        if not found:
            raise DataError(f"no images found in folder {item}")
        return found
    if item.is_file() and item.suffix.lower() == ".csv":
        return [row.path for row in read_manifest(item)]
    if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES:
        return [item]
    raise DataError(f"training input {item} is not a folder, image or .csv manifest")


def load_rgb(path: Path) -> Image.Image:
    """Upright RGB, decoded exactly as the catalog decodes it (`training.images.decode_image`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    try:
        return decode_image(data).image
    except ImageError as exc:
        raise DataError(f"cannot read image {path}: {exc.message}", code=exc.code) from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- feature cache -----------------------------------------------------------------------------


def backbone_key(encoder) -> str:
    """Content hash of the backbone alone (spec + weights): what cached features depend on."""
    digest = content_hash(encoder.spec.to_dict(), encoder.backbone.state_dict())
    return f"{encoder.spec.name.replace(':', '-').replace('/', '-')}-{digest}"


# Bump when image loading or view-making changes what a cached feature means.
CACHE_VERSION = 3


class FeatureCache:
    """One float32 array per (backbone, view kind, image sha256); writes are atomic."""

    def __init__(self, root: str | Path | None, key: str):
        self.root = Path(root) / f"v{CACHE_VERSION}" / key if root is not None else None

    def _path(self, kind: str, sha: str) -> Path:
        return self.root / kind / sha[:2] / f"{sha}.npy"

    def load(self, kind: str, sha: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(kind, sha)
        try:
            return np.load(path) if path.is_file() else None
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed

    def save(self, kind: str, sha: str, array: np.ndarray) -> None:
        if self.root is None:
            return
        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array.astype(np.float32, copy=False))

        atomic_write(self._path(kind, sha), write)


@dataclass
class Features:
    """Backbone features of a list of images, aligned with `paths` (unreadable images dropped)."""

    paths: list[Path]
    clean: np.ndarray  # (N, D)
    views: np.ndarray | None  # (N, V, D) augmented views, or None


class FeatureExtractor:
    """Computes (or reads from the cache) clean and augmented-view backbone features."""

    def __init__(self, encoder, cache: FeatureCache, augment: AugmentConfig, batch_size: int = 32,
                 progress: Callable[[int], None] | None = None):
        self.encoder = encoder
        self.cache = cache
        self.recipe = recipe_key(augment)
        self.views = ViewMaker(augment, encoder.spec.input_size)
        self.batch_size = batch_size
        self.progress = progress  # told how many images each chunk covered (a job's progress)

    def extract(self, paths: list[Path], views: int = 0, desc: str = "features", chunk: int = 16) -> Features:
        """Features of `paths` (images that cannot be read are skipped with a warning)."""
        kept, clean, augmented = [], [], []
        with tqdm(total=len(paths), desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            for start in range(0, len(paths), chunk):
                for path, row_clean, row_views in self._chunk(paths[start : start + chunk], views):
                    kept.append(path)
                    clean.append(row_clean)
                    augmented.append(row_views)
                bar.update(len(paths[start : start + chunk]))
                if self.progress:
                    self.progress(len(paths[start : start + chunk]))
        if not kept:
            raise DataError(f"none of the {len(paths)} {desc} images could be read")
        return Features(kept, np.stack(clean), np.stack(augmented) if views else None)

    def _chunk(self, paths: list[Path], views: int) -> list[tuple[Path, np.ndarray, np.ndarray | None]]:
        """Cached rows where present; the missing views of the chunk in shared forward batches."""
        kind = f"views-{self.recipe}"
        entries, work = [], []
        for path in paths:
            sha = file_sha256(path)
            clean = self.cache.load("clean", sha)
            stored = self.cache.load(kind, sha) if views else None
            have = 0 if stored is None else len(stored)
            if clean is None or have < views:
                try:
                    image = load_rgb(path)
                except DataError as exc:
                    print(f"warning: skipped {exc.message}", file=sys.stderr)
                    continue
                if clean is None:
                    work.append((len(entries), "clean", self.encoder.preprocess.resize_crop(image)))
                work += [(len(entries), kind, self.views(image, view_rng(sha, i, self.recipe), i)) for i in range(have, views)]
            entries.append({"path": path, "sha": sha, "clean": clean, kind: stored})
        if work:
            self._fill(entries, work, kind)
        return [(e["path"], e["clean"][0], e[kind][:views] if views else None) for e in entries]

    def _fill(self, entries: list[dict], work: list, kind: str) -> None:
        feats = self._forward([image for _, _, image in work])
        fresh: dict[tuple[int, str], list[np.ndarray]] = {}
        for (owner, slot, _), row in zip(work, feats):
            fresh.setdefault((owner, slot), []).append(row)
        for (owner, slot), rows in fresh.items():
            entry = entries[owner]
            new = np.stack(rows)
            entry[slot] = new if entry[slot] is None else np.concatenate([entry[slot], new])
            self.cache.save(slot, entry["sha"], entry[slot])

    @torch.inference_mode()
    def _forward(self, images: list[Image.Image]) -> np.ndarray:
        """Features in the images' order, batched by size and taken at their own size (a rendered
        head's renderings can be smaller than the clean view; serving does not resize them either)."""
        out = np.zeros((len(images), self.encoder.feature_dim), np.float32)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.size, []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                part = indices[start : start + self.batch_size]
                rgb = np.stack([np.asarray(images[i].convert("RGB"), np.uint8) for i in part])
                pixels = self.encoder.preprocess.normalize_batch(rgb).to(self.encoder.device)
                out[part] = self.encoder.features(pixels).float().cpu().numpy()
        return out
