"""A harder photo manifest than photo-dev-none.csv, built from ../shared/data, for the verdict
benchmark (benchmarks/verdict.py --photo-hard): other derivation kinds than photo-dev's, so that a
default tuned to photo-dev shows where it breaks.

200 imagenet-sample photos (seeded), three derivations each: `smallcrop` (25-40 % of each side,
scaled to 256 px wide), `paste` (a 40-60 % crop shrunk into a texture-vs-shape stylized picture),
`rotate` (25-50 degrees, mirrored in half, blurred); JPEG quality 60. The gallery is every
imagenet-sample photo except a quarter of the 200 (every 4th), so 150 of the 600 queries have no
source. Images and manifest go to `folder`.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps
from spaces_tvs import SHARED

KINDS = ("smallcrop", "paste", "rotate")


def derive(source: Image.Image, kind: str, backgrounds: list[Path], rng: random.Random) -> Image.Image:
    w, h = source.size
    if kind == "rotate":
        image = source.rotate(rng.uniform(25, 50) * rng.choice((-1, 1)), resample=Image.BICUBIC, expand=True)
        image = ImageOps.mirror(image) if rng.random() < 0.5 else image
        return image.filter(ImageFilter.GaussianBlur(1.0))
    f = rng.uniform(0.25, 0.4) if kind == "smallcrop" else rng.uniform(0.4, 0.6)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = source.crop((x, y, x + cw, y + ch))
    if kind == "smallcrop":
        return crop.resize((256, int(256 * ch / cw)), Image.BICUBIC)
    canvas = Image.open(rng.choice(backgrounds)).convert("RGB").resize((320, 320))
    side = int(320 * rng.uniform(0.35, 0.55))
    canvas.paste(crop.resize((side, side)), (rng.randint(0, 320 - side), rng.randint(0, 320 - side)))
    return canvas


def build(folder: Path, seed: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted((SHARED / "imagenet-sample").glob("*.jpg"))
    backgrounds = sorted((SHARED / "texture-vs-shape-dev" / "stylized").rglob("*.*"))
    rng = random.Random(seed)
    chosen = rng.sample(photos, 200)
    gone = {p.stem for p in chosen[::4]}
    rows = []
    for photo in chosen:
        source = Image.open(photo).convert("RGB")
        for kind in KINDS:
            path = folder / f"{photo.stem}-{kind}.jpg"
            derive(source, kind, backgrounds, rng).save(path, quality=60)
            rows.append((path, "query", photo.stem))
    rows += [(p.resolve(), "source", p.stem) for p in photos if p.stem not in gone]
    manifest = folder / "photo-hard-none.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "role", "concept"])
        writer.writerows([str(path), role, concept] for path, role, concept in rows)
    return manifest
