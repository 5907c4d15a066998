"""`attrib eval --service`: the service's answers on a manifest with sourceless queries, every
space and the verdict, scored as copy detection is scored."""

import io
import json
from contextlib import redirect_stdout

from PIL import Image

from app.cli import eval_service


def test_scores_every_space_and_the_verdict_on_sourceless_queries(tmp_path, photos):
    sources, outside, distractors = photos[300:310], photos[320:324], photos[330:335]
    rows = ["path,role,concept"]
    rows += [f"{p},source,{p.stem}" for p in sources] + [f"{p},distractor," for p in distractors]
    for p in sources[:6] + outside:  # a crop of each: six with a source, four without
        image = Image.open(p).convert("RGB")
        query = tmp_path / f"q-{p.name}"
        image.crop((10, 10, image.width - 20, image.height - 10)).save(query, "JPEG", quality=80)
        rows.append(f"{query},query,{p.stem}")
    manifest = tmp_path / "none.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = io.StringIO()
    with redirect_stdout(out):
        assert eval_service.main([str(manifest), "--service", "--json"]) == 0
    figures = json.loads(out.getvalue())["none.csv"]
    assert {"copy, plain cosine", "copy, calibrated", "style, plain cosine", "style, calibrated", "verdict"} <= set(figures)
    verdict = figures["verdict"]
    assert set(verdict) == {"µAP", "R@P90", "none_AUROC", "ECE"}
    assert verdict["µAP"] > 90 and verdict["none_AUROC"] > 0.9  # crops of catalog photos, and four photos outside it
    assert 0 <= verdict["ECE"] <= 1
