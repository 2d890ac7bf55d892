"""Enterprise dynamic risk: each contribution moves the score by its configured weight, the
bands map scores to colours, and every contribution is explained."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rules.model import Colour
from rules.risk import OpenWarning, RiskInputs, RiskWeights, enterprise_risk
from rules.warnings import load_warning_config

from .rt_factory import T0

W = load_warning_config().risk
H = 3_600_000


def risk(**kw):
    return enterprise_risk(RiskInputs("E1", T0, **kw), W)


def ow(colour, hours=0.0, grade=None, hazard="HZ1"):
    return OpenWarning("W-1", "E1", hazard, Colour(colour), int(T0 - hours * H), grade)


@pytest.mark.parametrize(
    ("inputs", "score", "colour"),
    [
        ({}, 0, None),
        ({"installation_grades": [4]}, 5, None),
        ({"installation_grades": [3, 1, None]}, 20, Colour.BLUE),  # the worst grade counts
        ({"open_warnings": [ow("blue")]}, 5, Colour.BLUE),  # floored at the warning colour
        ({"open_warnings": [ow("yellow", hours=2)]}, 19, Colour.YELLOW),
        (
            {"open_warnings": [ow("orange", grade=1)], "installation_grades": [1]},
            72.5,
            Colour.ORANGE,
        ),
        ({"open_warnings": [ow("red", hours=30)]}, 80, Colour.RED),  # age capped at 20
        ({"repeated_alarms": 50}, 20, Colour.BLUE),  # capped
        ({"overdue_dispositions": 2}, 20, Colour.BLUE),
        ({"online_rate": 0.995}, 0, None),
        ({"online_rate": 0.985}, 4, None),  # 1 point below target x 4
        ({"online_rate": 0.5}, 20, Colour.BLUE),  # capped
        ({"active_filings": 1}, 5, None),
        (
            {
                "installation_grades": [1],
                "open_warnings": [ow("orange", 1, 1)],
                "overdue_dispositions": 1,
                "online_rate": 0.98,
            },
            20 + 52.5 + 2 + 10 + 6,
            Colour.RED,
        ),
    ],
)
def test_score_and_colour_table(inputs, score, colour):
    r = risk(**inputs)
    assert r.score == pytest.approx(score)
    assert r.colour == colour
    assert r.rank == (colour.rank if colour else 0)
    assert len(r.reasons) >= (1 if score else 0)


def test_reasons_explain_each_contribution():
    r = risk(
        installation_grades=[2], open_warnings=[ow("yellow", hours=1.5, grade=2)], online_rate=0.97
    )
    text = "\n".join(r.reasons)
    assert "grade-2 major hazard installation (+15)" in text
    assert "open 黄/yellow warning at HZ1 for 1.5 h" in text
    assert "online rate 97.0% below target 99.5%" in text


def test_floor_can_be_switched_off():
    w = W.model_copy(update={"floor_at_open_warning": False})
    # a fresh red warning scores 60: orange by the bands, no longer lifted to red
    assert enterprise_risk(RiskInputs("E1", T0, open_warnings=[ow("red")]), w).colour == (
        Colour.ORANGE
    )


def test_weights_reject_bands_out_of_order_and_unknown_grades():
    data = W.model_dump()
    data["bands"] = {"red": 10, "orange": 50, "yellow": 25, "blue": 5}
    with pytest.raises(ValidationError, match="bands must not decrease"):
        RiskWeights.model_validate(data)
    data = W.model_dump()
    data["grade_points"] = {"5": 1}
    with pytest.raises(ValidationError, match="grades are"):
        RiskWeights.model_validate(data)
