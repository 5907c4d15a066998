"""What a case's list row shows, read from an answer with or without calibrated probabilities."""

from app.cases import compare, head_ids, headline
from index.desk import Headline


def space(name, concepts, available=True, **extra):
    return {"space": name, "head_id": f"{name}-head" if available else None, "available": available,
            "message": None, "concepts": concepts, **extra}


def concept(name, share, **extra):
    return {"concept": name, "score": 0.5, "share": share, "sources": [], **extra}


def test_content_first_then_the_first_space_that_answered():
    before_calibration = {"spaces": {"content": space("content", [], available=False),
                                     "style": space("style", [concept("monet", 0.7), concept("manet", 0.3)])}}
    assert headline(before_calibration) == Headline("monet", 0.7, None)
    calibrated = {"spaces": {"content": space("content", [concept("tench", 0.9, probability=0.62)],
                                              none_probability=0.2),
                             "style": space("style", [concept("monet", 0.7, probability=0.4)], none_probability=0.5)}}
    assert headline(calibrated) == Headline("tench", 0.62, 0.2)
    uncalibrated_field = {"spaces": {"style": space("style", [concept("monet", 0.7, probability=None)],
                                                    none_probability=None)}}
    assert headline(uncalibrated_field) == Headline("monet", 0.7, None)
    assert headline({"spaces": {}}) == headline({}) == Headline(None, None, None)
    assert head_ids(before_calibration) == {"style": "style-head"}


def test_compare_names_the_spaces_whose_ranking_moved():
    old = {"spaces": {"content": space("content", [], available=False),
                      "style": space("style", [concept("a", 0.6), concept("b", 0.4)])}}
    same_top = {"spaces": {"content": space("content", [], available=False),
                           "style": space("style", [concept("a", 0.6), concept("c", 0.4)])}}
    assert compare(old, old) == (False, {})
    assert compare(old, same_top) == (False, {"style": {"before": ["a", "b"], "after": ["a", "c"]}})
    new_head = {"spaces": {"content": space("content", [concept("x", 1.0)]), "style": old["spaces"]["style"]}}
    assert compare(old, new_head) == (True, {"content": {"before": [], "after": ["x"]}})


def test_the_verdict_is_the_headline_when_the_answer_has_one():
    answer = {"verdict": {"kind": "none", "concept": "monet", "probability": 0.2, "none_probability": 0.7},
              "spaces": {"style": space("style", [concept("manet", 0.9, probability=0.9)], none_probability=0.05)}}
    assert headline(answer) == Headline("monet", 0.2, 0.7)
    assert headline({"verdict": None, **{k: v for k, v in answer.items() if k != "verdict"}}) == Headline("manet", 0.9, 0.05)
