"""Formatting (pure): numbers, signed deltas, table cells, one-line texts, first lines, durations."""

import math

import pytest

from search.record.format import (
    MISSING, first_line, format_cell, format_duration, format_number, format_signed, one_line,
)


def test_a_number_has_its_digits_and_a_missing_one_its_marker():
    assert format_number(2.8123456, 6) == "2.812346"
    assert format_number(0.91234) == "0.9123"
    assert format_number(2048, 1) == "2048.0"
    for missing in (None, math.nan, math.inf, -math.inf):
        assert format_number(missing) == MISSING == "-"
        assert format_number(missing, 6, "") == ""
        assert format_number(missing, 4, "n/a") == "n/a"


def test_a_number_formats_as_the_loop_wrote_its_figures():
    assert format_number(3.0, 6) == "%.6f" % 3.0 == "3.000000"
    assert format_number(None, 6) == "-"


def test_a_signed_number_always_shows_its_sign():
    assert format_signed(0.012) == "+0.0120"
    assert format_signed(-3.54, 1) == "-3.5"
    assert format_signed(0.0) == "+0.0000"
    assert format_signed(None) == "-" and format_signed(math.nan, 1) == "-"
    assert format_signed(None, 1, "") == ""


def test_a_cell_formats_floats_and_shows_anything_else_as_it_is():
    assert format_cell(1.23456789) == "1.2346" and format_cell(1.23456789, 1) == "1.2"
    assert format_cell(12) == "12" and format_cell(True) == "True" and format_cell("x|y") == "x|y"
    assert format_cell(None) == "-" and format_cell(math.nan) == "-"


def test_one_line_joins_whitespace_and_cuts_with_an_ellipsis():
    assert one_line("  a\n\tb   c ") == "a b c"
    assert one_line(None) == "" and one_line(42) == "42"
    assert one_line("abcdefghij", 10) == "abcdefghij"
    assert one_line("abcdefghijk", 10) == "abcdefg..."
    assert len(one_line("word " * 100, 90)) == 90
    assert one_line("abcdef", 2) == "ab"  # no room for the ellipsis


def test_first_line_is_the_first_non_blank_line_cut_to_its_width():
    assert first_line("\n\n  Traceback  (most recent)\nline 2") == "Traceback (most recent)"
    assert first_line(None) == "" and first_line("  \n ") == ""
    long = "x" * 500 + "\nsecond"
    assert first_line(long) == "x" * 197 + "..." and len(first_line(long)) == 200
    assert first_line(long, 120) == "x" * 117 + "..."


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"), (187, "3m07s"), (3599, "59m59s"), (3600, "1h00m"),
    (7530, "2h05m"), (None, "?"), (math.nan, "?"), (math.inf, "?"),
])
def test_a_duration_reads_in_seconds_minutes_or_hours(seconds, text):
    assert format_duration(seconds) == text
