"""The demo corpus: real photos that ship inside dependencies, so `make run` needs no download.

scikit-image bundles public-domain and CC-licensed sample photos (see skimage/data/README.txt
and scikit-image's LICENSE for each image's origin), and matplotlib bundles a public-domain
portrait of Grace Hopper. Each photo is its own concept; the two motorcycle views share one.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SKIMAGE_PHOTOS = {
    "astronaut.png": "astronaut",
    "brick.png": "brick wall",
    "camera.png": "cameraman",
    "cell.png": "cell microscopy",
    "chelsea.png": "cat",
    "clock_motion.png": "clock",
    "coffee.png": "coffee cup",
    "coins.png": "coins",
    "grass.png": "grass",
    "gravel.png": "gravel",
    "hubble_deep_field.jpg": "hubble deep field",
    "ihc.png": "immunohistochemistry",
    "microaneurysms.png": "retina microaneurysms",
    "moon.png": "moon surface",
    "motorcycle_left.png": "motorcycle",
    "motorcycle_right.png": "motorcycle",
    "page.png": "printed page",
    "retina.jpg": "retina",
    "rocket.jpg": "rocket launch",
    "text.png": "text on a wall",
}


def demo_corpus() -> list[tuple[Path, str]]:
    """(path, concept) for every demo photo that is installed."""
    skimage_data = files("skimage") / "data"
    corpus = [(Path(str(skimage_data / name)), concept) for name, concept in SKIMAGE_PHOTOS.items()]
    corpus.append((Path(str(files("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg")), "grace hopper"))
    return [(path, concept) for path, concept in corpus if path.is_file()]
