"""GenEval's rules on hand-built detections, one block per task type, each expected value written out.

Reference: djghosh13/geneval @ af4902f evaluation/evaluate_images.py — `evaluate_image` keeps
detections with score > threshold (0.9 for counting), most confident first, at most 16 per class;
`evaluate` ANDs include clauses (count, then colour of the first `count` objects, then position
of each against each object of the target clause) and ORs exclude clauses; `relative_position`
shrinks the centre offset by 0.1 × (sum of sizes) per axis and reads the direction from the
offset normalised by its unshrunk length (> 0.5). Reasons are GenEval's own strings.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.metrics.geneval import Detection, Rules, evaluate_image, relative_position, select_objects


def _det(x0: float, y0: float, x1: float, y1: float, score: float = 0.95) -> Detection:
    return Detection((x0, y0, x1, y1), score)


def _judge(metadata: dict[str, Any], detections: dict[str, list[Detection]],
           colours: dict[tuple[float, ...], str] | None = None) -> tuple[bool, list[str]]:
    objects = select_objects(detections, metadata["tag"], Rules())
    return evaluate_image(metadata, objects, lambda found, name: [(colours or {})[d.box] for d in found])


SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}]}
TWO = {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "cow", "count": 1}]}
COUNTING = {"tag": "counting", "include": [{"class": "clock", "count": 3}],
            "exclude": [{"class": "clock", "count": 4}]}
COLORS = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
POSITION = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                           {"class": "dog", "count": 1, "position": ["right of", 0]}]}
ABOVE = {"tag": "position", "include": [{"class": "cup", "count": 1},
                                        {"class": "bird", "count": 1, "position": ["above", 0]}]}
COLOR_ATTR = {"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"},
                                               {"class": "apple", "count": 1, "color": "green"}]}
BEAR = _det(0, 0, 100, 100)  # centre (50, 50), 100 × 100


@pytest.mark.parametrize(("metadata", "detections", "colours", "expected"), [
    # single_object: strictly above 0.3
    (SINGLE, {"bench": [_det(0, 0, 9, 9, 0.31)]}, None, (True, [])),
    (SINGLE, {"bench": [_det(0, 0, 9, 9, 0.30)]}, None, (False, ["expected bench>=1, found 0"])),
    (SINGLE, {"chair": [_det(0, 0, 9, 9, 0.99)]}, None, (False, ["expected bench>=1, found 0"])),
    # two_object: both clauses
    (TWO, {"bench": [_det(0, 0, 9, 9)], "cow": [_det(20, 0, 29, 9, 0.4)]}, None, (True, [])),
    (TWO, {"bench": [_det(0, 0, 9, 9)], "cow": [_det(20, 0, 29, 9, 0.2)]}, None,
     (False, ["expected cow>=1, found 0"])),
    # counting: threshold 0.9 (strict), exclude "4 or more"
    (COUNTING, {"clock": [_det(0, 0, 9, 9, 0.95), _det(20, 0, 29, 9, 0.92), _det(40, 0, 49, 9, 0.91)]}, None,
     (True, [])),
    (COUNTING, {"clock": [_det(0, 0, 9, 9, 0.95), _det(20, 0, 29, 9, 0.92), _det(40, 0, 49, 9, 0.90)]}, None,
     (False, ["expected clock>=3, found 2"])),
    (COUNTING, {"clock": [_det(x, 0, x + 9, 9, 0.91 + x / 1000) for x in (0, 20, 40, 60)]}, None,
     (False, ["expected clock<4, found 4"])),
    (COUNTING, {"clock": [_det(x, 0, x + 9, 9, 0.5) for x in (0, 20, 40, 60)]}, None,  # 0.3 < s ≤ 0.9
     (False, ["expected clock>=3, found 0"])),
    (COUNTING, {"clock": [_det(x, 0, x + 9, 9, 0.95) for x in range(0, 400, 20)]}, None,  # 20 → at most 16
     (False, ["expected clock<4, found 16"])),
    # colors: the first `count` (most confident) objects are classified
    (COLORS, {"car": [_det(0, 0, 9, 9, 0.9), _det(20, 0, 29, 9, 0.8)]},
     {(0, 0, 9, 9): "red", (20, 0, 29, 9): "blue"}, (True, [])),
    (COLORS, {"car": [_det(0, 0, 9, 9, 0.8), _det(20, 0, 29, 9, 0.9)]},
     {(0, 0, 9, 9): "red", (20, 0, 29, 9): "blue"},
     (False, ["expected red car>=1, found 0 red; and 1 blue"])),
    # position: dog right of the bear, offsets shrunk by 0.1 × (100 + 100) = 20 px per axis
    (POSITION, {"teddy bear": [BEAR], "dog": [_det(110, 0, 210, 100)]}, None, (True, [])),  # dx 110 → 90/110
    (POSITION, {"teddy bear": [BEAR], "dog": [_det(115, 0, 135, 100)]}, None,  # dx 75 − 0.1·120 = 63
     (True, [])),
    (POSITION, {"teddy bear": [BEAR], "dog": [_det(15, 0, 115, 100)]}, None,  # dx 15 < 20: no relation
     (False, ["expected dog right of target, found  target"])),
    (POSITION, {"teddy bear": [BEAR], "dog": [_det(60, 150, 160, 250)]}, None,  # dx 60→40, dy 150→130
     (False, ["expected dog right of target, found below target"])),  # 40/161.6 ≤ 0.5 < 130/161.6
    (POSITION, {"dog": [_det(300, 0, 400, 100)]}, None,
     (False, ["expected teddy bear>=1, found 0", "no target for dog to be right of"])),
    (ABOVE, {"cup": [_det(0, 200, 50, 250)], "bird": [_det(0, 0, 50, 50)]}, None, (True, [])),
    (ABOVE, {"cup": [_det(0, 0, 50, 50)], "bird": [_det(0, 200, 50, 250)]}, None,
     (False, ["expected bird above target, found below target"])),
    # color_attr: each object its own colour
    (COLOR_ATTR, {"wine glass": [_det(0, 0, 9, 9)], "apple": [_det(20, 0, 29, 9)]},
     {(0, 0, 9, 9): "purple", (20, 0, 29, 9): "green"}, (True, [])),
    (COLOR_ATTR, {"wine glass": [_det(0, 0, 9, 9)], "apple": [_det(20, 0, 29, 9)]},
     {(0, 0, 9, 9): "purple", (20, 0, 29, 9): "red"},
     (False, ["expected green apple>=1, found 0 green; and 1 red"])),
    (COLOR_ATTR, {"wine glass": [_det(0, 0, 9, 9)], "apple": [_det(20, 0, 29, 9)]},
     {(0, 0, 9, 9): "green", (20, 0, 29, 9): "purple"},  # colours swapped between the objects
     (False, ["expected purple wine glass>=1, found 0 purple; and 1 green",
              "expected green apple>=1, found 0 green; and 1 purple"])),
])
def test_every_task_type(metadata: dict[str, Any], detections: dict[str, list[Detection]],
                         colours: dict[tuple[float, ...], str] | None,
                         expected: tuple[bool, list[str]]) -> None:
    assert _judge(metadata, detections, colours) == expected


def test_relative_position_by_hand() -> None:
    # A centre (160, 50) vs B (50, 50): offset (110, 0), shrunk by 20 → (90, 0), / 110 → 0.82 > 0.5.
    assert relative_position(_det(110, 0, 210, 100), BEAR, 0.1) == {"right of"}
    # Offset (100, 100) shrunk by 0.1 × (50 + 50) = 10 → (90, 90) / 141.4 = 0.64 on both axes.
    assert relative_position(_det(100, 100, 150, 150), _det(0, 0, 50, 50), 0.1) == {"right of", "below"}
    # Offset (100, 30) shrunk by 10 → (90, 20) / 104.4: right of only (0.19 < 0.5 vertically).
    assert relative_position(_det(100, 30, 150, 80), _det(0, 0, 50, 50), 0.1) == {"right of"}
    assert relative_position(_det(0, 0, 50, 50), _det(0, 200, 50, 250), 0.1) == {"above"}
    assert relative_position(_det(0, 0, 50, 50), _det(5, 5, 55, 55), 0.1) == set()
    # A larger margin swallows the same offset.
    assert relative_position(_det(110, 0, 210, 100), BEAR, 0.6) == set()


def test_max_overlap_suppresses_boxes_of_a_class_when_enabled() -> None:
    boxes = {"kite": [_det(0, 0, 10, 10, 0.9), _det(1, 1, 11, 11, 0.8), _det(50, 50, 60, 60, 0.7)]}
    assert len(select_objects(boxes, "single_object", Rules())["kite"]) == 3  # 1.0 = off (GenEval's default)
    kept = select_objects(boxes, "single_object", Rules(max_overlap=0.5))["kite"]
    assert [d.score for d in kept] == [0.9, 0.7]  # IoU 100/142 with the first: suppressed


def test_scores_are_thresholded_in_float32_as_mmdet_hands_them_over() -> None:
    """float32(0.3) = 0.30000001192…: above 0.3 in float64, not in float32 (where GenEval compares)."""
    import numpy as np

    score = float(np.float32(0.3))
    assert score > 0.3
    assert select_objects({"bench": [_det(0, 0, 9, 9, score)]}, "single_object", Rules()) == {}
    counting = float(np.float32(0.9))
    assert select_objects({"clock": [_det(0, 0, 9, 9, counting)]}, "counting", Rules()) == {}
    kept = select_objects({"bench": [_det(0, 0, 9, 9, float(np.nextafter(np.float32(0.3), 1)))]},
                          "single_object", Rules())
    assert len(kept["bench"]) == 1


def test_equal_scores_are_ordered_later_listed_first_as_argsort_reversed() -> None:
    """The first `count` objects are the ones whose colour and position count: on a tie GenEval's
    np.argsort(scores)[::-1] puts the later-listed detection first."""
    first, second = _det(0, 0, 9, 9, 0.8), _det(50, 50, 59, 59, 0.8)
    kept = select_objects({"car": [first, second, _det(90, 90, 99, 99, 0.5)]}, "colors", Rules())
    assert kept["car"][:2] == [second, first]
    colours = {first.box: "red", second.box: "blue", (90, 90, 99, 99): "red"}
    correct, reasons = evaluate_image(COLORS, kept, lambda found, name: [colours[d.box] for d in found])
    assert not correct and reasons[0].startswith("expected red car>=1, found 0 red")
