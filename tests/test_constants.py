import pytest

from search.operators.constants import find_constants, format_value, merge_constants, set_constants

SRC = '''"""doc"""
import math

DEPTH = 8  # the one dial
TOTAL_BATCH_TOKENS = 2**19  # tokens per step
MATRIX_LR = 0.04  # Muon learning rate
NEG = -1.5e-3
COMPILE = True  # compile on CUDA
name_lower = 3
NOT_NUMBER = "text"
DERIVED = DEPTH * 2


def f():
    INNER = 5
    return INNER
'''


def test_finds_module_level_numeric_constants_only():
    found = find_constants(SRC)
    assert set(found) == {"DEPTH", "TOTAL_BATCH_TOKENS", "MATRIX_LR", "NEG", "COMPILE"}
    assert found["TOTAL_BATCH_TOKENS"].value == 524288 and found["NEG"].value == -1.5e-3


def test_rewrite_changes_values_and_nothing_else():
    out = set_constants(SRC, {"MATRIX_LR": 0.0123456, "DEPTH": 6, "TOTAL_BATCH_TOKENS": 4096})
    assert "MATRIX_LR = 0.01235  # Muon learning rate\n" in out
    assert "DEPTH = 6  # the one dial\n" in out
    assert "TOTAL_BATCH_TOKENS = 4096  # tokens per step\n" in out
    changed = [a for a, b in zip(SRC.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == 3 and len(SRC.splitlines()) == len(out.splitlines())
    assert find_constants(out)["MATRIX_LR"].value == pytest.approx(0.01235)


def test_unknown_constant_is_named():
    with pytest.raises(KeyError, match="WIDTH"):
        set_constants(SRC, {"WIDTH": 3})


def test_format_value():
    assert format_value(3) == "3" and format_value(0.1) == "0.1" and format_value(1e-5) == "1e-05"
    assert format_value(True) == "True"


def test_merge_of_constant_retunes_takes_each_constant_from_the_side_that_changed_it():
    a = set_constants(SRC, {"DEPTH": 6, "MATRIX_LR": 0.05})
    b = set_constants(SRC, {"TOTAL_BATCH_TOKENS": 4096, "NEG": -0.002, "MATRIX_LR": 0.05})  # both: the same text
    merged = merge_constants(SRC, a, b)
    assert merged == set_constants(SRC, {"DEPTH": 6, "MATRIX_LR": 0.05, "TOTAL_BATCH_TOKENS": 4096, "NEG": -0.002})
    assert merge_constants(SRC, a, SRC) == a and merge_constants(SRC, SRC, SRC) == SRC
    # unicode before a value on its line: columns are byte offsets
    uni = "É = 1\nLR = 0.1  # é\nWD = 0.2  # ü\n"
    assert merge_constants(uni, uni.replace("0.1", "0.3"), uni.replace("0.2", "0.4")) == "É = 1\nLR = 0.3  # é\nWD = 0.4  # ü\n"


def test_merge_of_constants_refuses_anything_but_value_changes():
    a = set_constants(SRC, {"DEPTH": 6})
    assert merge_constants(SRC, a, set_constants(SRC, {"DEPTH": 4})) is None  # one constant, two values
    assert merge_constants(SRC, a, SRC.replace("# Muon learning rate", "# Muon LR")) is None  # a comment
    assert merge_constants(SRC, a, SRC.replace("name_lower = 3", "name_lower = 4")) is None  # not a constant
    assert merge_constants(SRC, a, SRC + "EXTRA = 1\n") is None  # a constant added
    assert merge_constants(SRC, a, SRC.replace("NEG = -1.5e-3\n", "")) is None  # one removed
    assert merge_constants(SRC, a, SRC.replace("DEPTH = 8", "DEPTH = 8 ")) is None  # whitespace off the value
    assert merge_constants(SRC, a, "def broken(:\n") is None
