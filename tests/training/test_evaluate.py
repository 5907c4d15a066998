"""The AbC metrics against a direct numpy computation (with ties), `attrib eval` on a tiny
manifest with known answers, and the AbC benchmark layout on a generated fixture."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import evaluate
from training.data import DataError
from training.evaluate import Benchmark, evaluate_scores
from training.ranking import average_precision, positive_ranks, recall_at, score_matrix


def reference_metrics(scores, positive, ks=(1, 5, 10, 100)):
    """Direct AbC computation: stable sort by descending score, then walk the ranking."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    ranks = np.flatnonzero(hits) + 1
    ap = np.mean(np.arange(1, len(ranks) + 1) / ranks)
    return ap, {k: hits[:k].sum() / positive.sum() for k in ks}


def test_metrics_match_a_direct_computation_including_ties():
    rng = np.random.default_rng(3)
    for _ in range(200):
        size = int(rng.integers(5, 40))
        scores = rng.integers(0, 6, size).astype(np.float32) / 5  # many exact ties
        positive = rng.random(size) < 0.3
        if not positive.any():
            positive[int(rng.integers(size))] = True
        ranks = positive_ranks(scores, positive)
        ap, recalls = reference_metrics(scores, positive)
        assert average_precision(ranks) == pytest.approx(ap)
        for k, value in recalls.items():
            assert recall_at(ranks, k) == pytest.approx(value)


def test_ties_are_broken_by_gallery_order():
    scores = np.array([0.5, 0.5, 0.5, 0.9], dtype=np.float32)
    assert positive_ranks(scores, np.array([False, True, False, False])).tolist() == [3]
    assert positive_ranks(scores, np.array([True, False, True, False])).tolist() == [2, 4]


def test_invalid_items_are_left_out_of_the_ranking():
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    valid = np.array([False, True, True, True])
    assert positive_ranks(scores, np.array([False, False, True, False]), valid).tolist() == [2]


def test_full_and_abc_protocols_on_known_scores():
    bench = Benchmark("toy", [Path("q1"), Path("q2")], ["a", "b"], [Path("s1"), Path("s2"), Path("d1"), Path("s3")],
                      ["a", "b", None, "a"])
    scores = np.array([[0.2, 0.9, 0.5, 0.8],   # q1: s2 (other concept) first, s3 2nd, d1 3rd, s1 4th
                       [0.1, 0.3, 0.6, 0.2]], dtype=np.float32)  # q2: d1, s2
    full = evaluate_scores(bench, scores)
    assert full["mAP"] == pytest.approx(100 * np.mean([(1 / 2 + 2 / 4) / 2, 1 / 2]))
    assert full["R@1"] == 0 and full["R@5"] == 100
    bench.protocol = "abc"  # other concepts' sources leave the gallery: q1 ranks s3 1st, s1 3rd
    abc = evaluate_scores(bench, scores)
    assert abc["mAP"] == pytest.approx(100 * np.mean([(1 + 2 / 3) / 2, 1 / 2]))
    assert abc["R@1"] == pytest.approx(100 * np.mean([0.5, 0.0]))


def test_faiss_scores_equal_inner_products():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    assert np.allclose(score_matrix(q, g, chunk_elements=120), q @ g.T, atol=1e-5)


# -- end to end with the real default encoder --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory, photos):
    """Queries are byte copies of their sources (known answer: perfect ranking)."""
    root = tmp_path_factory.mktemp("tiny")
    lines = ["path,role,concept"]
    for i, photo in enumerate(photos[:3]):
        shutil.copy(photo, root / f"src{i}.jpg")
        shutil.copy(photo, root / f"query{i}.jpg")
        lines += [f"src{i}.jpg,source,c{i}", f"query{i}.jpg,query,c{i}"]
    for photo in photos[3:9]:
        shutil.copy(photo, root / photo.name)
        lines.append(f"{photo.name},distractor,")
    (root / "tiny.csv").write_text("\n".join(lines) + "\n")
    return root / "tiny.csv"


def test_eval_on_a_tiny_manifest_with_known_answers(tiny_manifest, tmp_path, capsys):
    args = [str(tiny_manifest), "--cache-dir", str(tmp_path / "cache"), "--json"]
    for protocol in ("full", "abc"):
        assert evaluate.main(args + ["--protocol", protocol]) == 0
        metrics = json.loads(capsys.readouterr().out)["default"]["benchmarks"]["tiny.csv"]
        assert metrics["mAP"] == pytest.approx(100) and metrics["R@1"] == pytest.approx(100)
        assert metrics["queries"] == 3 and metrics["gallery"] == 9 and metrics["protocol"] == protocol
    assert list((tmp_path / "cache").rglob("*.npy")), "clean features were cached"


def test_eval_embeddings_equal_the_catalog_path(encoder, tiny_manifest, tmp_path):
    paths = sorted(tiny_manifest.parent.glob("*.jpg"))[:4]
    via_eval = evaluate.Embedder(tmp_path / "cache").embed(encoder, paths, "t")
    via_catalog = encoder.embed_images([Image.open(p).convert("RGB") for p in paths])
    assert np.allclose(via_eval, via_catalog, atol=1e-5)


def test_eval_refuses_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,role,concept\nx.jpg,query,a\n")
    with pytest.raises(DataError, match="not found"):
        evaluate.main([str(bad)])
    bad.write_text("path,role\nx.jpg,query\n")
    with pytest.raises(DataError, match="concept"):
        evaluate.main([str(bad)])
    with pytest.raises(Exception, match="nothing to evaluate"):
        evaluate.main([])


# -- AbC layout --------------------------------------------------------------------------------


def _image(path: Path, colour, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[...] = colour
    array[size // 4 : size // 2, size // 4 :] = 255 - np.array(colour, dtype=np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def abc_root(tmp_path_factory):
    """A tiny copy of the AbC layout: dataset/json/test_bamfg.json, entry folders, laion_subset/."""
    root = tmp_path_factory.mktemp("abc")
    rng = np.random.default_rng(0)
    entries = []
    for e in range(3):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        exemplars = [f"exemplar/model{e}/{i}.png" for i in range(2)]
        for rel in exemplars:
            _image(root / rel, colour)
        synth = {kind: [f"synth/model{e}/{kind}_{i}.png" for i in range(2)] for kind in ("gpt", "object")}
        for rel in synth["gpt"] + synth["object"]:
            _image(root / rel, colour)  # same picture as its exemplars: a known answer
        entries.append({"exemplar": exemplars, "synth": synth})
    for i in range(5):
        _image(root / "laion_subset" / f"{i:05d}.png", tuple(int(c) for c in rng.integers(0, 255, 3)))
    (root / "dataset" / "json").mkdir(parents=True)
    (root / "dataset" / "json" / "test_bamfg.json").write_text(json.dumps(entries))
    return root


def test_abc_layout_is_read_as_the_abc_protocol(abc_root):
    bench = evaluate.abc_benchmark(abc_root, "test_bamfg", "gpt")
    assert bench.protocol == "abc" and len(bench.queries) == 6
    assert len(bench.gallery) == 5 + 6 and bench.gallery_concepts[:5] == [None] * 5
    assert bench.query_concepts[0] == bench.gallery_concepts[5]
    with pytest.raises(DataError, match="not found"):
        evaluate.abc_benchmark(abc_root, "test_missing", "gpt")
    with pytest.raises(DataError, match="no synthetic"):
        evaluate.abc_benchmark(abc_root, "test_bamfg", "nonsense")


def test_eval_on_the_abc_fixture(abc_root, tmp_path, capsys):
    argv = ["--abc-root", str(abc_root), "--split", "test_bamfg", "--prompt", "gpt", "--prompt", "object",
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert evaluate.main(argv) == 0
    benchmarks = json.loads(capsys.readouterr().out)["default"]["benchmarks"]
    assert set(benchmarks) == {"abc:test_bamfg:gpt", "abc:test_bamfg:object"}
    for metrics in benchmarks.values():
        assert metrics["mAP"] == pytest.approx(100) and metrics["R@5"] == pytest.approx(100)
        assert metrics["gallery"] == 11 and metrics["protocol"] == "abc"
