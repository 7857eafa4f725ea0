import pytest

from search.constants import find_constants, format_value, set_constants

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
