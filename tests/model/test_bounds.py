"""Pure tests of the one number check every boundary uses (netsim.model.bounds)."""

import math

import pytest

from netsim.model import bounds
from netsim.model.bounds import Bound, InvalidValue
from netsim.errors import NetsimError


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -1.0, True, False, "5", None, [1], 604800.5])
def test_non_finite_wrong_type_and_out_of_range_are_refused(value):
    why = bounds.problem(value, bounds.NOTICE_S, "notice")
    assert why is not None and why.startswith("notice must be a number from 0 to 604800 seconds, not ")
    with pytest.raises(InvalidValue, match="notice must be"):
        bounds.check(value, bounds.NOTICE_S, "notice")


@pytest.mark.parametrize("value", [0, 0.0, 1.5, 900, 604800])
def test_values_in_range_pass_as_floats(value):
    assert bounds.problem(value, bounds.NOTICE_S, "notice") is None
    got = bounds.check(value, bounds.NOTICE_S, "notice")
    assert got == value and isinstance(got, float)


def test_integer_bounds_take_whole_numbers_and_their_extra_values():
    assert bounds.check(-1, bounds.DURATION_S, "duration") == -1
    assert bounds.check(30.0, bounds.DURATION_S, "duration") == 30
    assert isinstance(bounds.check(30.0, bounds.DURATION_S, "duration"), int)
    for bad in (5.5, -2, 10**20, math.nan):
        with pytest.raises(InvalidValue, match=r"an integer from 0 to 604800 seconds, or -1"):
            bounds.check(bad, bounds.DURATION_S, "duration")


def test_open_lower_bound_and_negative_hint():
    assert "0 (excluded)" in bounds.problem(0, bounds.CAPTURE_S, "--duration")
    assert "cannot be negative" in bounds.problem(-1, bounds.NOTICE_S, "notice")
    assert bounds.problem(0.001, bounds.CAPTURE_S, "--duration") is None


def test_huge_integers_are_shortened_in_the_message():
    why = bounds.problem(99999999999999999999, bounds.UPDATE_DOMAIN, "update_domain")
    assert why == "update_domain must be an integer from 0 to 19, not 999999999999..."


def test_parse_number_reads_command_line_text():
    assert bounds.parse_number("1e2", bounds.NOTICE_S, "--in") == 100.0
    for text in ("inf", "nan", "1e308", "-0.5", "ten", ""):
        with pytest.raises(InvalidValue, match="--in must be a number"):
            bounds.parse_number(text, bounds.NOTICE_S, "--in")
    with pytest.raises(InvalidValue, match="integer"):
        bounds.parse_number("2.5", bounds.FRAME_COUNT, "--count")


def test_the_error_is_a_netsim_error_of_the_callers_choice():
    class Mine(NetsimError):
        pass
    assert issubclass(InvalidValue, NetsimError)
    with pytest.raises(Mine):
        bounds.check(math.inf, Bound(0, 1), "x", Mine)
