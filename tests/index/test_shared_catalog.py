"""Two processes' catalogs on one home (here two Catalog objects, each with its own state):
a reader reloads after every write of the other, and only then. Both databases."""

import os

from index.catalog import take_down_source
from index.ingest import IngestItem, ingest


def style_ids(catalog) -> set[int]:
    return set(catalog.live_space("style").index.ids().tolist())


def test_a_load_that_changes_nothing_does_not_make_the_others_reload(make_catalog, photos):
    writer, reader = make_catalog(), make_catalog()
    ingest(writer, [IngestItem(p.name, "a", path=p) for p in photos[:3]])
    loaded = reader.live_space("style")  # the reader loads what the writer saved
    space = writer.live_space("style")
    third = make_catalog()
    assert len(third.live_space("style").index) == 3  # a third process loads too
    assert writer.live_space("style") is space and reader.live_space("style") is loaded


def test_every_write_is_seen_even_within_one_clock_tick(make_catalog, photos):
    writer, reader = make_catalog(), make_catalog()
    first = ingest(writer, [IngestItem(p.name, "a", path=p) for p in photos[:2]])
    assert style_ids(reader) == {r.source_id for r in first}
    stamp = reader.stamp_path.stat()

    take_down_source(writer, first[0].source_id)
    # the generation file's mtime may repeat when two writes share a clock tick: make it so
    os.utime(reader.stamp_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert style_ids(reader) == {first[1].source_id}
