"""Choose the copy backbone's preprocessing: SSCD distilled with its short edge resized to 224,
256 or 288 px and the centre square cut out (training/sscd.py: 256, adopted), with a square
resize of the whole image (224, 256, 288), with the whole image at its aspect ratio (short edge
256, one image per forward, as SSCD's own evaluation feeds it), and SSCD's score normalisation,
on two sets:

- `other kinds`: derivation kinds that photo-dev does not have (rotated crops, grey low-quality
  JPEGs, hue shifts with a mirror, 48-px thumbnails, blends with another photo, 45 % crops,
  cartoons, framed thumbnails) of 400 imagenet-sample photos, 100 of them left out of the
  gallery (no source);
- `photo-dev-none.csv` (150 of 600 queries without a source) and `photo-dev-content.csv`.

Score normalisation (SSCD's docs/Evaluation.md): a query's top-1 score minus beta times its mean
similarity to its 3 nearest neighbours in a background set. Two background sets are tried: the
catalog itself without the top-1 candidate (the only images a deployed service has), and the 800
texture-vs-shape images (unrelated to every query). It changes the ranking of predictions
(µAP, R@P90, none AUROC), not R@1.

    .venv/bin/python benchmarks/copy_input_size.py
"""
import io
import os
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.benchmarks import manifest_benchmark  # noqa: E402
from training.copy_metrics import copy_detection  # noqa: E402
from training.sscd import CopyBackbone  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
D = SHARED / "imagenet-sample"
photos = sorted(D.glob("*.jpg"))
rng = random.Random(7)


def jpeg(img, q):
    b = io.BytesIO(); img.save(b, "JPEG", quality=q); return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


def derive(img, kind, other):
    w, h = img.size
    if kind == "rotcrop":
        a = rng.uniform(12, 30) * rng.choice([-1, 1]); r = img.rotate(a, resample=Image.BICUBIC, expand=False)
        return r.crop((w*0.2, h*0.2, w*0.8, h*0.8))
    if kind == "gray_jpeg": return jpeg(ImageOps.grayscale(img).convert("RGB"), 12)
    if kind == "hue_flip":
        hsv = np.array(ImageOps.mirror(img).convert("HSV")); hsv[..., 0] = (hsv[..., 0].astype(int) + 80) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB")
    if kind == "tiny": return img.resize((48, 48), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if kind == "blend": return Image.blend(img, other.resize(img.size), 0.45)
    if kind == "bigcrop":
        s = 0.45; x = rng.uniform(0, 1 - s) * w; y = rng.uniform(0, 1 - s) * h
        return img.crop((x, y, x + s * w, y + s * h))
    if kind == "cartoon":
        return ImageOps.posterize(img.filter(ImageFilter.ModeFilter(7)), 2).filter(ImageFilter.EDGE_ENHANCE_MORE)
    if kind == "frame":
        c = ImageOps.expand(img.resize((w // 2, h // 2)), border=(w // 4, h // 4), fill=(rng.randrange(256),) * 3)
        return ImageEnhance.Contrast(c).enhance(1.6)


KINDS = ["rotcrop", "gray_jpeg", "hue_flip", "tiny", "blend", "bigcrop", "cartoon", "frame"]


def other_kinds() -> tuple[list, list, list, list]:
    """(query images, their concepts, gallery images, their concepts)."""
    picked = rng.sample(photos, 400)
    queries = []
    for i, path in enumerate(picked):
        other = Image.open(rng.choice(photos)).convert("RGB")
        queries.append(derive(Image.open(path).convert("RGB"), KINDS[i % len(KINDS)], other))
    gallery = [p for p in photos if p not in set(picked[300:])]
    return queries, [p.stem for p in picked], [Image.open(p).convert("RGB") for p in gallery], [p.stem for p in gallery]


def manifest_set(name: str) -> tuple[list, list, list, list]:
    bench = manifest_benchmark(SHARED / name, "full")
    load = lambda paths: [Image.open(p).convert("RGB") for p in paths]  # noqa: E731
    return load(bench.queries), list(bench.query_concepts), load(bench.gallery), list(bench.gallery_concepts)


def square(size: int):
    return lambda image: np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def whole(size: int):
    def resize(image: Image.Image) -> np.ndarray:
        scale = size / min(image.size)
        return np.asarray(image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                                       Image.Resampling.BILINEAR), dtype=np.uint8)
    return resize


def unit(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def figures(scores: np.ndarray, qc: list, gc: list, confidence: np.ndarray | None = None) -> dict:
    top = scores.argmax(axis=1)
    confidence = scores[np.arange(len(top)), top] if confidence is None else confidence
    known = set(gc) - {None}
    sourced = np.array([c in known for c in qc])
    correct = sourced & (np.array(gc, dtype=object)[top] == np.array(qc, dtype=object))
    return {"R@1": 100 * float(correct[sourced].mean())} | copy_detection(confidence, correct, sourced)


def normalised(scores: np.ndarray, background: np.ndarray | None, beta: float = 1.0) -> np.ndarray:
    """Top-1 score minus beta x the mean of the query's 3 best background similarities (the
    catalog's next 3 scores when `background` is None)."""
    ordered = -np.sort(-scores, axis=1)
    neighbours = ordered[:, 1:4] if background is None else -np.sort(-background, axis=1)[:, :3]
    return ordered[:, 0] - beta * neighbours.mean(axis=1)


def main() -> None:
    sets = {"other kinds": other_kinds(), "photo-dev-none": manifest_set("photo-dev-none.csv"),
            "photo-dev-content": manifest_set("photo-dev-content.csv")}
    unrelated = [Image.open(p).convert("RGB") for p in sorted((SHARED / "texture-vs-shape-dev").rglob("*.png"))]
    models = {s: CopyBackbone("sscd_distilled", size=s) for s in (224, 256, 288)}
    variants = {f"short edge {s}, centre crop": (model, model.crop) for s, model in models.items()}
    variants |= {f"square {s}": (model, square(s)) for s, model in models.items()}
    variants["short edge 256, whole image"] = (CopyBackbone("sscd_distilled", engine="onnx"), whole(256))
    print("| set | preprocessing | score | R@1 | µAP | R@P90 | none AUROC |\n|---|---|---|---|---|---|---|")
    for name, (queries, qc, gallery, gc) in sets.items():
        for label, (model, crop) in variants.items():
            def embed(images, model=model, crop=crop):  # one image per forward: shapes may differ
                return unit(np.concatenate([model.features_of_pixels([crop(i)]) for i in images]))
            q, g = embed(queries), embed(gallery)
            scores = q @ g.T
            rows = {"plain cosine": figures(scores, qc, gc)}
            if label == "short edge 256, centre crop":
                rows["normalised, background: the catalog"] = figures(scores, qc, gc, normalised(scores, None))
                b = embed(unrelated)
                rows["normalised, background: tvs images"] = figures(scores, qc, gc, normalised(scores, q @ b.T))
            for score, result in rows.items():
                none = f"{result['none_AUROC']:.4f}" if "none_AUROC" in result else "-"
                print(f"| {name} | {label} | {score} | {result['R@1']:.2f} | {result['µAP']:.2f} | "
                      f"{result['R@P90']:.2f} | {none} |", flush=True)


if __name__ == "__main__":
    main()
