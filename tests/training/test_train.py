"""CPU smoke runs of `attrib train` (two steps on a few real images), the checkpoint round trip,
the feature cache, layered config, and the supervised baseline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import evaluate, train
from training.end_to_end import fit_end_to_end
from training.head import AnchorBatches
from training.loop import make_encoder
from training.config import AugmentConfig, ConfigError, TrainConfig, merge
from training.data import DataError, collect_training_images
from training.views import ViewMaker, silhouette, sketch, view_rng
from training.encoders import load_checkpoint

TINY = ["--steps", "2", "--views", "2", "--batch-size", "4", "--negatives", "2", "--head", "mlp", "--fit", "sgd",
        "--out-dim", "16", "--set", "head.hidden_dim=32", "--set", "warmup_steps=1", "--recipe", "head"]


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    """3 stylized queries and their 2 sources (one concept), 2 distractors; absolute paths."""
    tvs = shared_data / "texture-vs-shape-dev"
    stylized = sorted((tvs / "stylized" / "airplane").glob("airplane1-*.jpg"))[:3]
    rows = [f"{p},query,airplane1" for p in stylized]
    rows += [f"{tvs / kind / 'airplane' / 'airplane1.png'},source,airplane1" for kind in ("edges", "silhouettes")]
    rows += [f"{p},distractor," for p in sorted((shared_data / "imagenet-sample").glob("*.jpg"))[:2]]
    path = tmp_path_factory.mktemp("manifest") / "tiny.csv"
    path.write_text("path,role,concept\n" + "\n".join(rows) + "\n")
    return path


def test_two_step_smoke_run_writes_a_loadable_checkpoint(manifest, tmp_path, capsys):
    ckpt, cache = tmp_path / "ad.pt", tmp_path / "cache"
    assert train.main([str(manifest), "--output", str(ckpt), "--cache-dir", str(cache), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["anchors"] == 5 and summary["negatives"] == 2
    assert (summary["catalog_anchors"], summary["pool_anchors"]) == (2, 3)  # sources, queries
    check = summary["separation_check"]
    assert check["computed"] and set(check["before"]) == set(check["after"]) == {"gap", "pool_to_source", "pool_to_pool"}
    assert set(summary["final_terms"]) == {"align_loss", "infomax_loss", "loss"}
    encoder = load_checkpoint(ckpt)
    assert encoder.encoder_id == summary["encoder_id"] and encoder.dim == 16
    assert encoder.center.abs().sum() > 0
    sidecar = json.loads(Path(f"{ckpt}.config.json").read_text())
    assert sidecar["encoder_id"] == encoder.encoder_id and sidecar["config"]["steps"] == 2
    assert sidecar["separation_check"] == check
    assert Path(f"{ckpt}.losses.png").stat().st_size > 0
    vectors = encoder.embed_images([Image.new("RGB", (64, 64))])
    assert vectors.shape == (1, 16) and np.isclose(np.linalg.norm(vectors), 1, atol=1e-5)

    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    assert len(files) == 2 * (5 * 2 + 2)  # clean + views per anchor, clean per distractor; on Lite0 and the copy backbone
    again = tmp_path / "again.pt"
    assert train.main([str(manifest), "--output", str(again), "--cache-dir", str(cache), *TINY]) == 0
    second = json.loads(capsys.readouterr().out)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == files, "second run reuses the cache"
    assert second["encoder_id"] == summary["encoder_id"], "same seed, same checkpoint"


def test_default_run_fits_the_whitening_head_and_checks_separation(manifest, tmp_path, capsys):
    ckpt, cache = tmp_path / "w.pt", str(tmp_path / "cache")
    assert train.main([str(manifest), "--output", str(ckpt), "--cache-dir", cache, "--views", "2", "--recipe", "distilled"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["head_fit"]["method"] == "whiten" and summary["loss_plot"] is None
    encoder = load_checkpoint(ckpt)
    weight = encoder.head.weight.detach()
    assert encoder.head_config["type"] == "linear" and torch.allclose(weight, weight.T, atol=1e-5)
    assert not torch.allclose(weight, torch.eye(len(weight)))
    assert summary["separation_check"]["computed"]
    # one forward per query: the views are distilled into a query head, none are made at serving time
    assert encoder.query_views == (0, None) and encoder.query_head is not None
    check = encoder.head_config["self_check"]
    assert check["kept"] == "distilled" == summary["recipe"]["kept"] and set(check["candidates"]) == {"raw", "head", "distilled", "rendered"}
    assert train.main([str(manifest), "--output", str(tmp_path / "v.pt"), "--cache-dir", cache, "--views", "2", "--recipe", "views"]) == 0
    capsys.readouterr()
    views = load_checkpoint(tmp_path / "v.pt")
    assert views.query_views == (8, TrainConfig().augment) and views.query_head is None  # the old serving-time views
    assert views.head_config["self_check"]["kept"] == "views"  # checked against raw, so a loser can be refused
    assert set(views.head_config["self_check"]["candidates"]) == {"raw", "views"}

    assert train.main([str(manifest), "--output", str(tmp_path / "auto.pt"), "--cache-dir", cache, "--views", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    auto = load_checkpoint(tmp_path / "auto.pt")
    kept = summary["recipe"]["kept"]
    assert kept == auto.head_config["self_check"]["kept"] == auto.head_config["self_check"]["chosen"]
    assert (auto.query_head is not None) == (kept == "distilled")
    assert (auto.query_views[0] == 2 and auto.query_views[1].renderings == ("sketch", "silhouette")) == (kept == "rendered")
    assert kept != "rendered" or auto.name == "sscd_distilled" and auto.query_views[1].render_size == 192
    if kept == "raw":  # the identity on uncentred features
        assert torch.equal(auto.head.weight, torch.eye(auto.feature_dim)) and not auto.center.any()

    assert train.main([str(manifest), "--output", str(tmp_path / "r.pt"), "--cache-dir", cache, "--views", "2",
                       "--recipe", "rendered", "--backbone", "sscd_distilled"]) == 0
    capsys.readouterr()
    rendered = load_checkpoint(tmp_path / "r.pt")  # the query averaged with its sketch and silhouette: 3 forwards
    assert rendered.query_views == (2, AugmentConfig(renderings=("sketch", "silhouette"), render_size=192))
    assert rendered.query_head is None
    assert rendered.head_config["self_check"]["kept"] == "rendered" and rendered.name == "sscd_distilled"
    assert train.main([str(manifest), "--output", str(tmp_path / "one.pt"), "--cache-dir", cache, "--views", "2",
                       "--recipe", "one-forward"]) == 0
    one = json.loads(capsys.readouterr().out)["recipe"]  # the check's choice, the rendered head left out
    assert set(one["self_check"]["candidates"]) == {"raw", "head", "distilled"} and one["kept"] == one["self_check"]["chosen"]
    assert load_checkpoint(tmp_path / "one.pt").query_views == (0, None)
    # on Lite0, auto leaves the rendered head out (two more Lite0 forwards a query); forced, it renders at 224 px
    assert train.main([str(manifest), "--output", str(tmp_path / "lite0.pt"), "--cache-dir", cache, "--views", "2",
                       "--backbone", "efficientnet_lite0"]) == 0
    assert set(json.loads(capsys.readouterr().out)["recipe"]["self_check"]["candidates"]) == {"raw", "head", "distilled"}
    assert train.main([str(manifest), "--output", str(tmp_path / "lr.pt"), "--cache-dir", cache, "--views", "2",
                       "--backbone", "efficientnet_lite0", "--recipe", "rendered"]) == 0
    capsys.readouterr()
    assert load_checkpoint(tmp_path / "lr.pt").query_views == (2, AugmentConfig(renderings=("sketch", "silhouette")))

    sources_only = tmp_path / "catalog.csv"
    sources_only.write_text("\n".join(line for line in manifest.read_text().splitlines() if ",query," not in line) + "\n")
    assert train.main([str(sources_only), "--output", str(tmp_path / "c.pt"), "--cache-dir", cache, "--views", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["head_fit"]["method"] == "identity" and "no pool images" in capsys.readouterr().err + summary["head_fit"]["reason"]
    assert torch.equal(load_checkpoint(tmp_path / "c.pt").head.weight, torch.eye(encoder.feature_dim))
    assert summary["separation_check"]["computed"] is False


def test_a_different_seed_or_pairing_trains_a_different_head(manifest, tmp_path, capsys):
    base = [str(manifest), "--cache-dir", str(tmp_path / "cache"), *TINY]
    ids = set()
    for extra in ([], ["--seed", "1"], ["--pairing", "random"], ["--infomax-weight", "0", "--variance-weight", "1", "--covariance-weight", "0.04"]):
        assert train.main(base + ["--output", str(tmp_path / f"{len(ids)}.pt"), *extra]) == 0
        ids.add(json.loads(capsys.readouterr().out)["encoder_id"])
    assert len(ids) == 4


def test_from_catalog_uses_the_catalog_images(manifest, shared_data, tmp_path, capsys):
    images = sorted((shared_data / "imagenet-sample").glob("*.jpg"))[10:14]
    argv = ["--from-catalog", "--output", str(tmp_path / "cat.pt"), "--cache-dir", str(tmp_path / "cache"), *TINY]
    assert train.main(argv, catalog_images=images) == 0
    assert json.loads(capsys.readouterr().out)["anchors"] == 4
    with pytest.raises(DataError, match="catalog is empty"):
        train.main(argv, catalog_images=[])


def test_bad_inputs_fail_cleanly(tmp_path):
    out = ["--output", str(tmp_path / "x.pt")]
    with pytest.raises(DataError, match="no training input"):
        train.main(out)
    with pytest.raises(DataError):
        train.main([str(tmp_path / "missing")] + out)
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        train.main([str(tmp_path)] + out + ["--set", "loss.temprature=0.2"])
    with pytest.raises(ConfigError, match="CUDA"):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        train.main([str(tmp_path)] + out + ["--unfreeze-blocks", "2", "--head", "mlp", "--fit", "sgd"])


def test_config_layers_defaults_file_then_flags(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"steps": 10, "loss": {"temperature": 0.3, "infomax_weight": 0.5}}))
    args = train.build_parser().parse_args(["x", "-o", "o.pt", "--config", str(tmp_path / "c.json"), "--temperature", "0.2",
                                            "--set", "augment.crop_scale=0.5,1.0"])
    config = train.resolve_config(args)
    assert (config.steps, config.loss.temperature, config.loss.infomax_weight) == (10, 0.2, 0.5)
    assert config.augment.crop_scale == (0.5, 1.0) and config.batch_size == TrainConfig().batch_size
    with pytest.raises(ConfigError, match="unknown config.loss key"):
        merge(TrainConfig(), {"loss": {"weight": 1}})
    with pytest.raises(ConfigError, match="not a valid int"):
        merge(TrainConfig(), {"steps": "many"})
    with pytest.raises(ConfigError, match="needs head.type 'linear'"):
        train.resolve_config(train.build_parser().parse_args(["x", "-o", "o.pt", "--head", "mlp"]))
    with pytest.raises(ConfigError, match="pairing"):
        train.resolve_config(train.build_parser().parse_args(["x", "-o", "o.pt", "--pairing", "both"]))


def test_end_to_end_path_runs_on_the_cpu(manifest, tmp_path):
    """The CUDA path (unfreeze the last blocks) kept honest on the CPU: two steps, no autocast."""
    config = merge(TrainConfig(), {"steps": 2, "batch_size": 2, "negatives": 2, "unfreeze_blocks": 1, "warmup_steps": 1,
                                   "head": {"type": "mlp", "fit": "sgd", "out_dim": 16, "hidden_dim": 32}})
    encoder = make_encoder(config)
    before = {n: p.detach().clone() for n, p in encoder.backbone.named_parameters()}
    history = fit_end_to_end(encoder, collect_training_images([manifest]), config, torch.device("cpu"))
    assert len(history.steps) == 2
    changed = [n for n, p in encoder.backbone.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all("blocks.6" in n or "conv_head" in n or "bn2" in n for n in changed)
    assert not any(p.requires_grad for p in encoder.backbone.parameters())


def test_supervised_baseline_saves_two_mappers_that_eval_uses(manifest, tmp_path, capsys):
    ckpt = tmp_path / "sup.pt"
    argv = ["--supervised", str(manifest), "--output", str(ckpt), "--cache-dir", str(tmp_path / "cache"),
            "--steps", "2", "--batch-size", "2", "--negatives", "2"]
    assert train.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    query = load_checkpoint(tmp_path / "sup.query.pt")
    source = load_checkpoint(ckpt)
    assert query.encoder_id != source.encoder_id and source.head_config["type"] == "linear"
    assert summary["query_encoder"] == "sup.query.pt"
    pair = evaluate.load_encoder_pair(str(ckpt))
    assert pair.query.encoder_id == query.encoder_id and pair.gallery.encoder_id == source.encoder_id
    assert evaluate.main([str(manifest), "--encoder", str(ckpt), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "tiny.csv" in capsys.readouterr().out


def test_views_are_deterministic_and_bridge_media(shared_data):
    image = Image.open(sorted((shared_data / "texture-vs-shape-dev" / "stylized" / "cat").glob("*.jpg"))[0]).convert("RGB")
    maker = ViewMaker(TrainConfig().augment, 224)
    one, two = maker(image, view_rng("abc", 3, "r")), maker(image, view_rng("abc", 3, "r"))
    assert one.size == (224, 224) and np.array_equal(np.asarray(one), np.asarray(two))
    for drawn in (sketch(image), silhouette(image)):
        values = np.unique(np.asarray(drawn))
        assert set(values.tolist()) <= {0, 255} and np.asarray(drawn).mean() > 127  # dark figure on white


def test_training_inputs_split_into_anchors_and_negatives(manifest, shared_data, tmp_path):
    images = collect_training_images([manifest])
    assert (len(images.anchors), len(images.pool), len(images.negatives)) == (2, 3, 2)  # sources, queries, distractors
    folder = tmp_path / "pool"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    images = collect_training_images([manifest], negative_inputs=[folder])
    assert len(images.negatives) == 3 and folder / "a.png" in images.negatives
    with pytest.raises(DataError, match="no images"):
        (tmp_path / "empty").mkdir()
        collect_training_images([tmp_path / "empty"])


def test_training_images_are_loaded_upright(tmp_path):
    from PIL import Image

    from training.data import load_rgb

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rotated.jpg").size == (48, 64)


def test_anchor_batches_balance_catalog_and_pool():
    generator = torch.Generator().manual_seed(0)
    batches = AnchorBatches(rows=100, pool_rows=10, pool_share=0.5, batch=8, generator=generator)
    seen_pool = set()
    for _ in range(5):
        idx = batches.next()
        assert len(idx) == 8 and len(set(idx.tolist())) == 8
        assert (idx >= 90).sum() == 4  # half of every batch from the 10 pool rows
        seen_pool |= {i for i in idx.tolist() if i >= 90}
    assert seen_pool == set(range(90, 100))  # every pool row within three batches' epochs
    uniform = AnchorBatches(rows=100, pool_rows=10, pool_share=0.0, batch=8, generator=generator)
    first_epoch = torch.cat([uniform.next() for _ in range(12)]).tolist()
    assert len(set(first_epoch)) == 96 and max(first_epoch) < 100  # one shuffled epoch over all rows


def test_pool_inputs_are_pool_images(manifest, shared_data, tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "q.png")
    images = collect_training_images([manifest], pool_inputs=[folder], pool_images=[tmp_path / "pool" / "q.png"])
    assert folder / "q.png" in images.pool and len(images.pool) == 4 and len(images.anchors) == 2
    catalog = sorted((shared_data / "imagenet-sample").glob("*.jpg"))[:2]
    only_pool = collect_training_images([], catalog, pool_images=[folder / "q.png"])
    assert only_pool.anchors == catalog and only_pool.pool == [folder / "q.png"]
