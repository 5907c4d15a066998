"""Choose the copy backbone's input size: SSCD distilled at 224, 256 and 288 px (square resize) on
derivation kinds that photo-dev does not have (rotated crops, grey low-quality JPEGs, hue shifts
with a mirror, 48-px thumbnails, blends with another photo, 45 % crops, cartoons, framed
thumbnails) of 400 imagenet-sample photos, 100 of them left out of the gallery (no source).

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
from training.copy_metrics import copy_detection_of_scores  # noqa: E402
from training.sscd import CopyBackbone  # noqa: E402

D = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data")) / "imagenet-sample"
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


kinds = ["rotcrop", "gray_jpeg", "hue_flip", "tiny", "blend", "bigcrop", "cartoon", "frame"]
picked = rng.sample(photos, 400)
sourced = set(picked[:300])
queries, qc = [], []
for i, p in enumerate(picked):
    img = Image.open(p).convert("RGB"); other = Image.open(rng.choice(photos)).convert("RGB")
    queries.append(derive(img, kinds[i % len(kinds)], other)); qc.append(p.stem)
gallery = [p for p in photos if p not in set(picked[300:])]
gc = [p.stem for p in gallery]
gimgs = [Image.open(p).convert("RGB") for p in gallery]
for size in (224, 256, 288):
    bb = CopyBackbone("sscd_distilled", size=size)
    g = bb.embed_features(gimgs); q = bb.embed_features(queries)
    g /= np.linalg.norm(g, axis=1, keepdims=True); q /= np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ g.T
    top = s.argmax(1)
    r1 = np.mean([gc[t] == c for t, c, p in zip(top, qc, picked) if p in sourced])
    res = copy_detection_of_scores(s, qc, gc)
    per = {k: round(float(np.mean([gc[top[i]] == qc[i] for i in range(300) if kinds[i % 8] == k])), 2) for k in kinds}
    print(size, "R@1", round(100 * r1, 1), {k: round(v, 2) for k, v in res.items()}, per, flush=True)
