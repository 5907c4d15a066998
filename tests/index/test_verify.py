"""`verify` finds each way the catalog's parts can disagree, and `repair` fixes what can be
fixed (issue 25, item 8). Real catalogs with both backbones, on both databases."""

import os
import time

import numpy as np

from index.catalog import COPY, get_source
from index.ingest import IngestItem, ingest
from index.jobs import repair, verify


def parts(report):
    return {(problem.part, problem.what): problem.count for problem in report.problems}


def test_a_healthy_catalog_is_clean(make_catalog, copy_backbone, photos):
    catalog = make_catalog(copy=copy_backbone)
    ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:6]])
    report = verify(catalog)
    assert report.clean and report.sources == 6 and report.notes == []


def test_every_mismatch_is_found_and_all_but_a_lost_image_repaired(make_catalog, copy_backbone, photos):
    catalog = make_catalog(copy=copy_backbone)
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:8]])
    ids = [r.source_id for r in results]
    style = catalog.live_space("style")
    style.index.remove(np.array(ids[:2]))  # two vectors lost
    catalog.save_space("style")
    catalog.features_of(copy_backbone.backbone_id).remove(ids[2:5])  # three copy features lost
    old = time.time() - 3600
    orphan = catalog.blobs.root / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    os.utime(orphan, (old, old))
    catalog.blobs.path(get_source(catalog.sessions, ids[7])[0].sha256).unlink()  # a source's image is gone

    found = parts(verify(catalog))
    assert found[("vectors/style", "stored features have no vector")] == 2
    assert found[("features/sscd_distilled", "sources have no stored features")] == 3
    assert found[("vectors/copy", "vectors belong to no stored features")] == 3
    assert found[("files", "stored images or thumbnails are used by no row")] == 1
    assert found[("images", "sources have no stored image")] == 1

    fixed = repair(catalog)
    assert parts(fixed) == {("images", "sources have no stored image"): 1}  # nothing can bring it back
    assert any("vectors/style" in line for line in fixed.repaired) and not orphan.exists()
    assert len(catalog.live_space(COPY).index) == 8 and len(catalog.live_space("style").index) == 8


def test_attrib_verify_reports_without_repairing_and_repairs_when_asked(tmp_path, monkeypatch, database_url,
                                                                         photos, capsys):
    from app.cli import main

    for name, value in {"HOME": str(tmp_path / "cli"), "DATABASE_URL": database_url, "DEVICE": "cpu"}.items():
        monkeypatch.setenv(f"ATTRIB_{name}", value)
    assert main(["index", *map(str, photos[:4]), "--concept-from", "stem"]) == 0
    segments = sorted((tmp_path / "cli" / "features").glob("efficientnet_lite0-*/seg-*.npz"))
    segments[0].unlink()  # as if a crash lost the encoder's features of the first batch
    capsys.readouterr()
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "mismatch: features/efficientnet_lite0: 4 sources have no stored features (1, 2, 3, 4)" in out
    assert main(["verify"]) == 1  # checking changed nothing
    assert main(["verify", "--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired: features/efficientnet_lite0: 4 sources have no stored features" in out
    assert out.strip().endswith("clean: 4 sources checked")
    assert main(["verify", "--json"]) == 0 and '"clean": true' in capsys.readouterr().out
