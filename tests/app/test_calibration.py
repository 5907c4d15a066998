"""Calibrated probabilities and the none mass through a real catalog, the HTTP API and
`attrib calibrate`, on SQLite and PostgreSQL: the demo corpus against an off-catalog goldfish,
fits keyed to the live head, refits after the catalog drifts."""

import json
import time

import pytest
import torch

from app.attribution import attribute_bytes
from app.cli import main
from app.demo import demo_corpus
from index.calibration import rollback, set_head
from index.ingest import IngestItem, ingest
from tests.app.test_cases import decide, open_case
from tests.app.test_spaces_api import wait_for
from training.encoders import create_encoder


def check_probabilities(answer: dict) -> None:
    probabilities = [c["probability"] for c in answer["concepts"]]
    assert all(0 <= p <= 1 for p in probabilities) and 0 <= answer["none_probability"] <= 1
    assert sum(probabilities) + answer["none_probability"] <= 1 + 1e-9
    assert abs(sum(c["share"] for c in answer["concepts"]) - 1) < 1e-6  # share stays the bare softmax


def style_of(catalog, data: bytes, k: int = 5):
    return attribute_bytes(catalog, data, k, space="style").spaces["style"]


def test_demo_corpus_tells_a_near_duplicate_from_an_off_catalog_goldfish(make_catalog, shared_data, edit):
    catalog = make_catalog()
    corpus = demo_corpus()
    ingest(catalog, [IngestItem(path.name, concept, path=path) for path, concept in corpus])
    goldfish = style_of(catalog, (shared_data / "imagenet-sample" / "n01443537_goldfish.jpg").read_bytes())
    assert goldfish.none_probability > 0.8 and goldfish.concepts[0].probability < 0.15
    astronaut = next(path for path, concept in corpus if concept == "astronaut")
    near = style_of(catalog, edit(astronaut))
    assert near.concepts[0].concept == "astronaut"
    assert near.none_probability < 0.2 and near.concepts[0].probability > 0.7
    for answer in (goldfish, near):
        check_probabilities({"concepts": [vars(c) for c in answer.concepts], "none_probability": answer.none_probability})
        assert answer.calibration.method == "catalog" and answer.calibration.head_id == catalog.backbone_id
    fitted = catalog.home / "heads" / f"{catalog.backbone_id}.calibration.json"
    assert fitted.is_file() and fitted.with_suffix(".npz").is_file()
    assert json.loads(fitted.read_text())["summary"]["queries"] > 0


def head_checkpoint(tmp_path, seed):
    encoder = create_encoder(head_config={"type": "linear", "out_dim": 64})
    with torch.no_grad():
        encoder.head.weight.add_(0.05 * torch.randn(encoder.head.weight.shape, generator=torch.Generator().manual_seed(seed)))
    encoder.invalidate_id()
    return encoder.save(tmp_path / f"head-{seed}.pt"), encoder.encoder_id


def test_calibration_follows_the_live_head_and_the_catalog(make_catalog, photos, tmp_path, edit):
    catalog = make_catalog()
    ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[300:308]])
    query = edit(photos[303])
    style = style_of(catalog, query).calibration
    assert (style.head_id, style.method) == (catalog.backbone_id, "catalog") and "8 sources" in style.fitted_on

    first, first_id = head_checkpoint(tmp_path, 1)
    second, second_id = head_checkpoint(tmp_path, 2)
    set_head(catalog, "content", first)
    assert catalog.calibrations.path(first_id).is_file()  # fitted when the head went live
    content = attribute_bytes(catalog, query, 3, space="content").spaces["content"]
    assert content.calibration.head_id == first_id and content.none_probability is not None
    first_fit = content.calibration.fitted_at
    set_head(catalog, "content", second)
    assert attribute_bytes(catalog, query, 3, space="content").spaces["content"].calibration.head_id == second_id
    rollback(catalog, "content")
    again = attribute_bytes(catalog, query, 3, space="content").spaces["content"].calibration
    assert again.head_id == first_id and again.fitted_at == first_fit  # its own fit, not the other head's
    assert style_of(catalog, query).calibration.fitted_at == style.fitted_at

    ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[308:312]])  # +50 %: the self-fit is redone
    assert style_of(catalog, query).calibration.fitted_at == style.fitted_at  # in the background, not in the request
    for _ in range(600):
        refit = style_of(catalog, query).calibration
        if refit.fitted_at > style.fitted_at:
            break
        time.sleep(0.05)
    assert refit.fitted_at > style.fitted_at and "12 sources" in refit.fitted_on


def test_the_answer_carries_probabilities_none_and_where_they_come_from(api, corpus, edit, photos):
    assert api.index(corpus).status_code == 200
    body = api.attribute(edit(corpus[3]), k=4).json()["spaces"]
    near = body["style"]
    assert near["concepts"][0]["concept"] == corpus[3].stem
    assert near["none_probability"] < 0.3 and near["concepts"][0]["probability"] > 0.5
    assert near["calibration"]["method"] == "catalog" and near["calibration"]["head_id"] == near["head_id"]
    assert near["calibration"]["fitted_at"] and "12 sources" in near["calibration"]["fitted_on"]
    assert body["content"]["none_probability"] is None and body["content"]["calibration"] is None
    far = api.attribute(photos[950].read_bytes(), k=4).json()["spaces"]["style"]
    assert far["none_probability"] > 0.7
    for answer in (near, far):
        check_probabilities(answer)
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert "Calibrated probability" in schemas["ConceptScore"]["properties"]["probability"]["description"]
    assert "Uncalibrated" in schemas["ConceptScore"]["properties"]["share"]["description"]
    assert "no catalog concept" in schemas["SpaceAnswer"]["properties"]["none_probability"]["description"]


@pytest.fixture
def env(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_DATABASE_URL", database_url)
    monkeypatch.setenv("ATTRIB_DEVICE", "cpu")


def test_calibrate_command_from_a_manifest_and_by_default(env, tmp_path, photos, capsys, edit):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in photos[400:408]:
        (folder / path.name).write_bytes(path.read_bytes())
    assert main(["index", str(folder), "--concept-from", "stem"]) == 0
    lines = ["path,role,concept"]
    for i, path in enumerate(photos[400:404] + photos[408:412]):  # 4 with a source, 4 without
        (tmp_path / f"q{i}.jpg").write_bytes(edit(path))
        lines.append(f"q{i}.jpg,query,{path.stem}")
    lines.append(f"corpus/{photos[400].name},source,{photos[400].stem}")  # other roles are ignored
    manifest = tmp_path / "labelled.csv"
    manifest.write_text("\n".join(lines) + "\n")
    capsys.readouterr()

    assert main(["calibrate", str(manifest), "--space", "style"]) == 0
    out, err = capsys.readouterr()
    assert "space style:" in out and "method manifest" in out and "8 fit queries (4 without a source)" in out
    assert "embedding queries" in err  # the progress bar
    assert main(["attribute", str(tmp_path / "q1.jpg"), "--json"]) == 0
    style = json.loads(capsys.readouterr().out)["spaces"]["style"]
    assert style["calibration"]["method"] == "manifest" and "labelled.csv" in style["calibration"]["fitted_on"]
    assert main(["attribute", str(tmp_path / "q1.jpg")]) == 0
    assert "no plausible source:" in capsys.readouterr().out

    assert main(["calibrate"]) == 0
    assert "method catalog" in capsys.readouterr().out
    assert main(["calibrate", str(manifest), "--space", "content"]) == 1
    assert "no content head" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text(f"path,role,concept\ncorpus/{photos[400].name},source,x\n")
    assert main(["calibrate", str(tmp_path / "empty.csv")]) == 1
    assert "no query rows" in capsys.readouterr().err


class Desk:
    """A running app with 12 indexed photos and a reviewer who decides cases on edited copies."""

    def __init__(self, api, photos, edit):
        from index.auth import create_key

        self.api, self.edit = api, edit
        self.indexed, self.off_catalog = photos[500:512], photos[520:531]
        assert api.index(self.indexed).status_code == 200
        api.reviewer = {"X-API-Key": create_key(api.app.state.catalog.sessions, "rita", "reviewer")[1]}
        self.reviewer = api.reviewer

    def case_for(self, path) -> int:
        return open_case(self.api, self.edit(path), filename="q.jpg", k=3)["id"]

    def decide(self, case_id: int, **body) -> None:
        response = decide(self.api, case_id, **({"note": ""} | body))
        assert response.status_code == 201, response.text

    def review(self) -> None:
        """22 verdicts that count, 10 of them no_match; an escalated and an open case that do not."""
        for path in self.indexed:
            self.decide(self.case_for(path), decision="match", concepts=[path.stem])
        for path in self.off_catalog[:9]:
            self.decide(self.case_for(path), decision="no_match")
        superseded = self.case_for(self.off_catalog[9])
        self.decide(superseded, decision="match", concepts=[self.indexed[0].stem], note="first look")
        self.decide(superseded, decision="no_match", note="on second look, no")  # the latest verdict counts
        self.decide(self.case_for(self.off_catalog[10]), decision="escalate")  # not a verdict: left out
        self.case_for(self.indexed[1])  # undecided: left out

    def style_answer(self, path) -> dict:
        answer = self.api.attribute(self.edit(path), params={"space": "style"}).json()["spaces"]["style"]
        check_probabilities(answer)
        return answer


def test_calibrate_from_the_reviewers_decisions(env, start_api, photos, capsys, edit):
    """`attrib calibrate --from-decisions`: the decided cases' stored images, labelled by their
    latest verdict (escalated cases left out), through the live head; the answers then say so."""
    desk = Desk(start_api(write_rate_per_minute=0), photos, edit)
    api, indexed = desk.api, desk.indexed
    capsys.readouterr()
    assert main(["calibrate", "--from-decisions"]) == 1
    assert "0 decided case(s)" in capsys.readouterr().err
    desk.review()

    assert main(["calibrate", "--from-decisions", "--space", "style"]) == 0
    out, err = capsys.readouterr()
    assert "method decisions" in out and "22 fit queries (10 without a source)" in out
    assert "embedding queries" in err
    answer = desk.style_answer(indexed[3])
    fit = answer["calibration"]
    assert fit["method"] == "decisions" and "reviewers' decisions on 22 cases" in fit["fitted_on"]
    stored = json.loads((api.app.state.catalog.home / "heads" / f"{fit['head_id']}.calibration.json").read_text())
    assert abs(stored["none_rate"] - 10 / 22) < 1e-9  # the prior is the reviewers' share of no_match
    assert answer["concepts"][0]["concept"] == indexed[3].stem
    assert api.client.delete(f"/concepts/{indexed[11].stem}", headers=api.auth).status_code == 200
    assert main(["calibrate", "--from-decisions", "--space", "style"]) == 0  # its match now has no source
    assert "22 fit queries (11 without a source)" in capsys.readouterr().out
    audit = api.client.get("/audit?action=calibration.fit&actor=cli", headers=api.auth).json()["items"]
    assert len(audit) == 2 and audit[0]["after"]["none_queries"] == 11 and audit[0]["target_id"] == "style"
    with pytest.raises(SystemExit) as both:  # a manifest and --from-decisions: an argument mistake
        main(["calibrate", "manifest.csv", "--from-decisions"])
    assert both.value.code == 2


def test_an_admin_recalibrates_a_space_over_http(start_api, photos, edit, monkeypatch):
    import index.calibration.labelled_fit

    desk = Desk(start_api(write_rate_per_minute=0), photos, edit)
    api = desk.api
    post = api.client.post
    refused = post("/spaces/style/calibration", headers=api.auth)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "too_few_decisions"
    monkeypatch.setattr(index.calibration.labelled_fit, "MIN_DECIDED", 1)
    desk.decide(desk.case_for(photos[540]), decision="no_match")
    refused = post("/spaces/style/calibration", headers=api.auth)  # checked before anything is embedded
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_matches"
    monkeypatch.undo()
    assert post("/spaces/style/calibration", headers=desk.reviewer).json()["error"]["code"] == "forbidden_role"
    assert post("/spaces/style/calibration").status_code == 401
    assert post("/spaces/nowhere/calibration", headers=api.auth).json()["error"]["code"] == "space_not_found"
    assert post("/spaces/style/calibration?from=guesses", headers=api.auth).status_code == 422
    desk.review()

    job = wait_for(api, post("/spaces/style/calibration?from=decisions", headers=api.auth), seconds=120)
    assert job["state"] == "succeeded" and job["kind"] == "calibrate" and job["done"] == job["total"] == 23
    fitted = job["calibration"]
    assert fitted["space"] == "style" and fitted["method"] == "decisions"
    assert (fitted["queries"], fitted["none_queries"]) == (23, 11) and 0 <= fitted["fit_top1_ece"] <= 1
    assert desk.style_answer(desk.indexed[2])["calibration"]["method"] == "decisions"
    # the newest 20: the three oldest verdicts drop
    monkeypatch.setattr(index.calibration.labelled_fit, "MAX_DECIDED", 20)
    job = wait_for(api, post("/spaces/style/calibration", headers=api.auth), seconds=120)
    assert (job["calibration"]["queries"], job["calibration"]["none_queries"]) == (20, 10)
    monkeypatch.undo()
    job = wait_for(api, post("/spaces/style/calibration?from=catalog", headers=api.auth), seconds=120)
    assert job["state"] == "succeeded" and job["calibration"]["method"] == "catalog"
    assert desk.style_answer(desk.indexed[2])["calibration"]["method"] == "catalog"
    entries = api.client.get("/audit?action=calibration.fit", headers=api.auth).json()["items"]
    assert [(e["key_name"], e["target_id"], e["after"]["method"]) for e in entries] == [
        ("tests", "style", "catalog"), ("tests", "style", "decisions"), ("tests", "style", "decisions")]
