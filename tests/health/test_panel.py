"""What the admin panel draws, computed from report data: slot bar and sparkline."""

from __future__ import annotations

from django_redis_resilience.health._panel import (
    SPARK_HEIGHT,
    SPARK_WIDTH,
    slot_segments,
    sparkline,
)


def test_the_slot_bar_covers_every_slot_once_and_marks_gaps_and_dead_masters() -> None:
    cluster = {
        "slots_covered": 10000,
        "ranges": [
            [5461, 10921, "b:2", False],
            [0, 5000, "a:1", True],
            [12000, 16000, "c:3", True],
        ],
    }
    segments = slot_segments(cluster)
    assert [(s.first, s.last, s.owner, s.state) for s in segments] == [
        (0, 5000, "a:1", "served"),
        (5001, 5460, "", "unassigned"),
        (5461, 10921, "b:2", "down"),
        (10922, 11999, "", "unassigned"),
        (12000, 16000, "c:3", "served"),
        (16001, 16383, "", "unassigned"),
    ]
    assert sum(s.last - s.first + 1 for s in segments) == 16384
    assert abs(sum(s.width for s in segments) - 100) < 0.01
    assert segments[2].label == "slots 5461-10921: b:2 (down)"


def test_no_node_answered_gives_one_unassigned_stretch() -> None:
    (segment,) = slot_segments({"slots_covered": 0, "slots_total": 16384})
    assert (segment.first, segment.last, segment.state) == (0, 16383, "unassigned")


def test_a_standalone_report_draws_no_slot_bar() -> None:
    assert slot_segments({}) == []


def test_the_sparkline_scales_into_its_box_and_marks_missing_answers() -> None:
    line = sparkline([(1.0, 1.0), (2.0, 2.0), (3.0, None), (4.0, 0.5), (5.0, 4.0), (6.0, 2.0)])
    assert line.samples == 6
    assert line.max_ms == 4.0
    assert line.last_ms == 2.0
    assert line.gaps == [SPARK_WIDTH * 2 / 5]
    points = [tuple(map(float, p.split(","))) for p in line.points.split()]
    assert len(points) == 3  # the longest run after the gap
    assert all(0 <= x <= SPARK_WIDTH and 0 <= y <= SPARK_HEIGHT for x, y in points)
    # The slowest sample is drawn highest (SVG's y grows downwards).
    assert min(points, key=lambda p: p[1])[0] == SPARK_WIDTH * 4 / 5


def test_a_node_that_never_answered_has_no_line() -> None:
    line = sparkline([(1.0, None), (2.0, None)])
    assert line.points == ""
    assert line.max_ms is None
    assert len(line.gaps) == 2
