"""End to end through the `attrib` command: real photos, real encoder, real databases."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from app.cli import main


@pytest.fixture
def corpus(tmp_path, photos):
    """40 real photos, one concept each (their file stem), plus one corrupt file."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in photos[100:140]:
        shutil.copy(path, folder / path.name)
    (folder / "zz_broken.jpg").write_bytes(photos[0].read_bytes()[:700])
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_DATABASE_URL", database_url)
    monkeypatch.setenv("ATTRIB_DEVICE", "cpu")


def cropped_copy(path, out):
    """Crop off the borders, shrink to 60 % and re-encode as a lower-quality JPEG."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    image = image.crop((int(w * 0.08), int(h * 0.12), int(w * 0.9), int(h * 0.93)))
    image.resize((image.width * 3 // 5, image.height * 3 // 5)).save(out, "JPEG", quality=70)
    return out


def grayscale_copy(path, out):
    ImageOps.grayscale(Image.open(path)).save(out, "PNG")
    return out


def attribute_json(capsys, image, k=3):
    capsys.readouterr()
    assert main(["attribute", str(image), "-k", str(k), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_then_attribute_edited_copies(env, corpus, tmp_path, capsys):
    assert main(["index", str(corpus), "--concept-from", "stem", "--batch-size", "16"]) == 1
    out, err = capsys.readouterr()
    assert "indexed 40, duplicates 0, rejected 1, ignored 1 non-image files" in out
    assert "zz_broken.jpg" in err and "corrupt" in err

    photos = sorted(p for p in corpus.glob("n*.jpg"))
    for photo in (photos[3], photos[27]):
        for edit in (cropped_copy, grayscale_copy):
            result = attribute_json(capsys, edit(photo, tmp_path / f"query-{edit.__name__}.img"))
            style = result["spaces"]["style"]["concepts"]
            assert style[0]["concept"] == photo.stem
            top = style[0]
            assert -1 <= top["score"] <= 1 and top["score"] == top["sources"][0]["score"]
            assert top["sources"][0]["filename"] == photo.name
            assert len(style) == 3 and result["backbone_id"].startswith("efficientnet_lite0-")
            assert result["spaces"]["content"]["available"] is False

    assert main(["index", str(corpus), "--concept-from", "stem"]) == 1
    assert "indexed 0, duplicates 40, rejected 1" in capsys.readouterr().out


def test_many_images_are_attributed_in_one_process(env, tmp_path, capsys, photos):
    assert main(["index", *map(str, photos[:3]), "--concept-from", "stem"]) == 0
    assert list((tmp_path / "home" / "heads").glob("*.calibration.json"))  # fitted at indexing, not at the first query
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:500])
    capsys.readouterr()
    assert main(["attribute", str(photos[1]), str(broken), str(photos[2]), "--json", "-k", "2"]) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["file"] for line in lines] == [str(photos[1]), str(broken), str(photos[2])]
    assert lines[0]["spaces"]["style"]["concepts"][0]["concept"] == photos[1].stem
    assert lines[1]["error"]["code"] and "spaces" not in lines[1]
    assert lines[2]["spaces"]["style"]["concepts"][0]["concept"] == photos[2].stem
    assert "1 of 3 images could not be attributed" in captured.err


def test_attribute_with_region_evidence(env, tmp_path, capsys, photos):
    """`attrib attribute --evidence regions` matches each space's first concept's sources region by
    region, as POST /attribute?evidence=regions does: an edited copy finds its source's region, an
    unrelated photo finds none."""
    assert main(["index", *map(str, photos[:4]), "--concept-from", "stem"]) == 0
    query = cropped_copy(photos[2], tmp_path / "query.jpg")
    capsys.readouterr()
    assert main(["attribute", str(query), "-k", "2", "--json", "--evidence", "regions"]) == 0
    first = json.loads(capsys.readouterr().out)["spaces"]["style"]["concepts"][0]
    assert first["concept"] == photos[2].stem
    regions = first["sources"][0]["regions"]
    assert regions["inliers"] >= 20 and len(regions["query_box"]) == 4 and len(regions["source_box"]) == 4
    assert main(["attribute", str(query), "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spaces"]["style"]["concepts"][0]["sources"][0]["regions"] is None

    assert main(["attribute", str(query), "-k", "2", "--evidence", "regions"]) == 0
    text = capsys.readouterr().out
    assert f"matched regions: {regions['inliers']} inliers" in text and "source box [" in text
    assert main(["attribute", str(photos[9]), "-k", "1", "--evidence", "regions"]) == 0
    counts = re.findall(r"matched regions: (?:none \()?(\d+) inliers", capsys.readouterr().out)
    assert counts and all(int(count) < 10 for count in counts)  # an unrelated photo: a few chance matches at most


def test_a_poisoned_file_is_reported_alone(env, tmp_path, capsys, photos, poisoned_dds):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in photos[140:143]:
        shutil.copy(path, folder / path.name)
    (folder / "n02027000_poisoned.png").write_bytes(poisoned_dds)  # a DDS named .png, sorted between good files
    assert main(["index", str(folder), "--concept-from", "stem"]) == 1
    out, err = capsys.readouterr()
    assert "indexed 3, duplicates 0, rejected 1" in out
    rejected = [line for line in err.splitlines() if line.startswith("rejected")]
    assert len(rejected) == 1 and rejected[0].startswith("rejected n02027000_poisoned.png: ")
    assert rejected[0].endswith("[not_an_image]") and "Traceback" not in err
    assert attribute_json(capsys, photos[141])["spaces"]["style"]["concepts"][0]["concept"] == photos[141].stem


def test_concepts_from_a_csv_and_human_output(env, corpus, tmp_path, capsys):
    photos = sorted(corpus.glob("n*.jpg"))[:4]
    table = tmp_path / "concepts.csv"
    table.write_text("path,concept\n" + "".join(f"corpus/{p.name},species {i}\n" for i, p in enumerate(photos)))
    assert main(["index", *map(str, photos), "--concept-from", f"csv:{table}"]) == 0
    capsys.readouterr()
    assert main(["attribute", str(cropped_copy(photos[2], tmp_path / "q.jpg")), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("verdict: ") and "probability" in lines[0] and "none" in lines[0]
    assert lines[1].startswith("backbone ")
    assert "[content] not available" in lines[3] and lines[5].startswith("[copy] head sscd_distilled-")
    style = next(i for i, line in enumerate(lines) if line.startswith("[style] head"))
    assert lines[style + 1].split()[:3] == ["no", "plausible", "source:"]
    assert lines[style + 2].split()[1:3] == ["species", "2"] and "probability" in lines[style + 2]
    assert "(uncalibrated)" in lines[style + 2]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["index", "/no/such/folder"], "no such file or folder"),
        (["attribute", "/no/such/image.jpg"], "cannot read"),
        (["attribute", "IMAGE", "-k", "0"], "-k must be between 1 and 100"),
        (["serve", "--workers", "0"], "--workers must be at least 1"),
        (["serve", "--workers", "100000000000000000000"], "--workers must be at most 256"),
    ],
)
def test_bad_paths_and_arguments_fail_cleanly(env, tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "x.png") if a == "IMAGE" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_image_and_empty_catalog(env, tmp_path, capsys, photos):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    assert main(["attribute", str(junk)]) == 1
    assert "not an image" in capsys.readouterr().err
    assert main(["attribute", str(photos[0])]) == 1
    assert "catalog is empty" in capsys.readouterr().err


def test_console_script_runs_in_a_fresh_process(tmp_path, photos, sqlite_url):
    environment = {**os.environ, "ATTRIB_HOME": str(tmp_path / "home"), "ATTRIB_DATABASE_URL": sqlite_url}
    command = [str(Path(sys.executable).parent / "attrib")]
    done = subprocess.run([*command, "index", str(photos[0]), "--concept", "tench"], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "indexed 1, duplicates 0, rejected 0" in done.stdout
    done = subprocess.run([*command, "attribute", str(photos[0]), "--json"], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert json.loads(done.stdout)["spaces"]["style"]["concepts"][0]["concept"] == "tench"


@pytest.mark.parametrize("argv", [["--help"], ["worker", "--help"], ["keys", "list"], ["keys", "create", "ops"]])
def test_light_commands_start_without_the_model_stack(tmp_path, sqlite_url, argv):
    """`attrib --help` and the key commands must not import torch (seconds of start-up)."""
    probe = ("import sys\nfrom app.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'LIGHT')")
    environment = {**os.environ, "ATTRIB_HOME": str(tmp_path / "home"), "ATTRIB_DATABASE_URL": sqlite_url}
    done = subprocess.run([sys.executable, "-c", probe, *argv], env=environment, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LIGHT"


def test_reindex_rebuilds_features_and_spaces(env, tmp_path, capsys, photos):
    assert main(["index", *map(str, photos[:3]), "--concept-from", "stem"]) == 0
    (tmp_path / "home" / "index" / "spaces" / "style.faiss").unlink()
    capsys.readouterr()
    assert main(["reindex"]) == 0
    out = capsys.readouterr().out
    assert "reindexed 3 sources" in out and "space style: 3 vectors" in out


def test_api_keys_are_created_listed_and_revoked(env, capsys):
    from app.services import open_database
    from app.settings import Settings
    from index.auth import verify_key

    assert main(["keys", "create", "--name", "ingest bot"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    engine, sessions = open_database(Settings())
    assert verify_key(sessions, key)
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ingest bot" in listing and "active" in listing and key not in listing
    assert main(["keys", "revoke", "1"]) == 0
    assert not verify_key(sessions, key)
    assert main(["keys", "revoke", "99"]) == 1
    assert "no API key with id 99" in capsys.readouterr().err
    engine.dispose()


@pytest.mark.parametrize("name, value", [("ATTRIB_BATCH_SIZE", "lots"), ("ATTRIB_MAX_CONCURRENT_DECODES", "0"),
                                         ("ATTRIB_WORKERS", "0")])
def test_invalid_settings_are_named(env, monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert main(["reindex"]) == 1
    assert name in capsys.readouterr().err


def test_spaces_are_listed_set_rolled_back_and_answer_together(env, tmp_path, capsys, photos):
    import torch

    from training.encoders import create_encoder

    assert main(["index", *map(str, photos[:4]), "--concept-from", "stem"]) == 0
    trained = create_encoder(head_config={"type": "linear", "out_dim": 32})
    with torch.no_grad():
        trained.head.weight.add_(0.05 * torch.randn(trained.head.weight.shape, generator=torch.Generator().manual_seed(0)))
    trained.invalidate_id()
    head = trained.save(tmp_path / "head.pt")
    capsys.readouterr()

    assert main(["spaces", "set", "content", str(head)]) == 0
    assert f"space content now serves head {trained.encoder_id} (4 vectors)" in capsys.readouterr().out
    result = attribute_json(capsys, photos[1], k=2)
    assert [result["spaces"][s]["concepts"][0]["concept"] for s in ("content", "style")] == [photos[1].stem] * 2
    assert result["spaces"]["content"]["head_id"] == trained.encoder_id
    assert set(result["timings_ms"]["search"]) == {"content", "copy", "style"}

    assert main(["spaces", "set", "content", "identity"]) == 0
    assert main(["spaces", "rollback", "content"]) == 0
    assert f"rolled back to head {trained.encoder_id}" in capsys.readouterr().out
    assert main(["spaces"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:4] == ["content", "efficientnet_lite0", trained.encoder_id, "4"]
    assert listing[2].split()[:2] == ["copy", "sscd_distilled"] and listing[3].startswith("style")

    foreign = create_encoder(random_init=True, head_config={"type": "linear", "out_dim": 8}).save(tmp_path / "f.pt")
    assert main(["spaces", "set", "content", str(foreign)]) == 1
    assert "trained on backbone" in capsys.readouterr().err
    assert main(["attribute", str(photos[1]), "--space", "nope"]) == 1
    assert "no space named 'nope'" in capsys.readouterr().err


def test_a_head_that_lost_its_self_check_needs_force(env, tmp_path, capsys, photos):
    from tests.app.conftest import losing_check
    from training.encoders import create_encoder

    assert main(["index", *map(str, photos[:4]), "--concept-from", "stem"]) == 0
    loser = create_encoder(head_config={"type": "linear", "out_dim": 32, "self_check": losing_check()})
    head = loser.save(tmp_path / "loser.pt")
    capsys.readouterr()
    assert main(["spaces", "set", "content", str(head)]) == 1
    err = capsys.readouterr().err
    assert "lost its self-check to the raw backbone" in err and "12.5 against 41.0" in err and "55.0 against 70.0" in err
    assert main(["spaces"]) == 0 and "content " not in capsys.readouterr().out  # nothing was put live
    assert main(["spaces", "set", "content", str(head), "--force"]) == 0
    capsys.readouterr()
    assert main(["spaces"]) == 0
    listing = capsys.readouterr().out
    assert "content    self-check (120 derived queries" in listing and "raw 41.0/70.0, head 12.5/55.0); kept head" in listing
