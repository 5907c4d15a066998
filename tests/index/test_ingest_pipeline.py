"""Ingestion's pipeline: decoding threads, overlapped commits, per-file progress."""

import numpy as np
import pytest

from index.ingest import IngestItem, ingest

PHOTOS = 24  # three batches of 8 (make_catalog's batch size)


def mixed_items(photos, tmp_path):
    """Photos, bad files and duplicates, within a batch and across batches."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:400])
    items = [IngestItem(p.name, p.stem, path=p) for p in photos[:PHOTOS]]
    items.insert(5, IngestItem("corrupt.jpg", "x", path=corrupt))
    items.insert(9, IngestItem("gone.jpg", "x", path=tmp_path / "gone.jpg"))
    items.insert(12, IngestItem("nameless.jpg", " ", path=photos[1]))
    items.append(IngestItem("again.jpg", photos[2].stem, data=photos[2].read_bytes()))  # a later batch
    items.insert(3, IngestItem("twice.jpg", photos[0].stem, path=photos[0]))  # the same batch
    return items


@pytest.mark.parametrize("workers", [2, 0])
def test_results_come_back_in_order_with_every_outcome(make_catalog, photos, tmp_path, workers):
    catalog = make_catalog(decode_workers=workers)
    items = mixed_items(photos, tmp_path)
    decoded, reported, decoded_at_first_result = [], [], []

    def on_result(result):
        decoded_at_first_result.append(len(decoded))
        reported.append(result)

    results = ingest(catalog, items, on_result=on_result, on_decoded=lambda: decoded.append(1))

    assert [r.filename for r in results] == [item.filename for item in items]
    assert reported == results
    assert len(decoded) == len(items)  # progress moves once per file
    # a batch is reported right after its commit (in the writer thread), so never before it was decoded
    assert decoded_at_first_result[0] >= catalog.config.batch_size
    by_name = {r.filename: r for r in results}
    assert (by_name["corrupt.jpg"].status, by_name["corrupt.jpg"].code) == ("rejected", "corrupt_image")
    assert (by_name["gone.jpg"].status, by_name["gone.jpg"].code) == ("rejected", "unreadable_file")
    assert (by_name["nameless.jpg"].status, by_name["nameless.jpg"].code) == ("rejected", "missing_concept")
    assert by_name["twice.jpg"].status == by_name["again.jpg"].status == "duplicate"
    assert by_name["twice.jpg"].source_id == by_name[photos[0].name].source_id
    assert by_name["again.jpg"].source_id == by_name[photos[2].name].source_id
    assert sum(r.status == "indexed" for r in results) == PHOTOS
    assert catalog.count() == PHOTOS


def test_workers_embed_exactly_as_the_ingesting_process(make_catalog, encoder, photos):
    catalog = make_catalog(decode_workers=2)
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:PHOTOS]])
    from index.images import decode_image

    ids = [r.source_id for r in results[:4]]
    direct = encoder.embed_features([decode_image(p.read_bytes()).image for p in photos[:4]])
    found, features = catalog.features.get(ids)
    stored = dict(zip(found.tolist(), features.astype(np.float32)))
    for source_id, expected in zip(ids, direct):
        assert np.allclose(stored[source_id], expected, rtol=2e-3, atol=2e-3)  # stored as float16


def test_jpegs_decoded_on_the_device_are_indexed_like_the_others(make_catalog, photos, tmp_path):
    """ATTRIB_DEVICE_DECODE=on, here on the CPU: JPEGs skip Pillow's decode, other files do not."""
    catalog = make_catalog(device_decode="on", decode_workers=0)
    png = tmp_path / "photo.png"
    from PIL import Image

    Image.open(photos[3]).save(png)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:3000])  # a sound header: only decoding finds it
    items = [IngestItem(p.name, p.stem, path=p) for p in photos[:3]]
    items += [IngestItem("photo.png", "png", path=png), IngestItem("truncated.jpg", "x", path=truncated),
              IngestItem("truncated-again.jpg", "x", path=truncated)]
    results = ingest(catalog, items)

    assert [r.status for r in results] == ["indexed"] * 4 + ["rejected"] * 2
    assert results[4].code == results[5].code == "corrupt_image"  # a repeat shares the rejection
    reference = make_catalog(device_decode="off")
    found, features = catalog.features.get([r.source_id for r in results[:4]])
    assert len(found) == 4
    from index.images import decode_image

    expected = reference.encoder.embed_features([decode_image(p.read_bytes()).image for p in [*photos[:3], png]])
    got = features.astype(np.float32)[np.argsort(np.argsort([r.source_id for r in results[:4]]))]
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99
