"""Enterprise dynamic risk: each contribution moves the score by its configured weight, the
bands map scores to colours, and every contribution is explained."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rules.model import Colour
from rules.risk import (
    OpenWarning,
    RiskInputs,
    RiskWeights,
    enterprise_risk,
    repeated_alarms,
    risk_inputs,
)
from rules.warnings import load_warning_config

from .rt_factory import MIN, T0, alarm, point, registry

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


def test_repeated_alarms_count_episodes_beyond_the_first_per_point():
    evs = [alarm(T0 - i * 60 * MIN, "AT-1", alarm_id=f"a{i}") for i in range(4)]  # 4 in 3 h
    evs += [alarm(T0 - 60 * MIN, "AT-1", alarm_id="a1", level="L2")]  # level change: same one
    evs += [alarm(T0, "AT-2", alarm_id="b"), alarm(T0, "AT-2", "cleared", alarm_id="b")]
    evs += [alarm(T0 - 25 * 60 * MIN, "AT-3", alarm_id=f"c{i}") for i in range(3)]  # too old
    evs += [alarm(T0, "AT-1", ent="E2", alarm_id="other-enterprise")]
    assert repeated_alarms(evs, "E1", T0) == 3


def test_risk_inputs_gather_grades_and_the_enterprises_warnings():
    reg = registry(
        point("AT-1", hazard="HZ1", level=3),
        point("AT-2", hazard="HZ2", level=1),
        point("TT-1", "temperature", hazard="", unit="°C"),
    )
    warnings = [
        ow("orange", grade=1, hazard="HZ2"),
        OpenWarning("W-2", "E9", "X", Colour.RED, T0, 1),
    ]
    inp = risk_inputs(reg, "E1", T0, open_warnings=warnings, online_rate=0.99)
    assert sorted(inp.installation_grades) == [1, 3]
    assert [w.warning_id for w in inp.open_warnings] == ["W-1"]
    r = enterprise_risk(inp, W)
    assert r.colour == Colour.ORANGE and r.score == 20 + 52.5 + 2
