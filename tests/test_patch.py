"""Parsing LLM answers into edits (search.llm.answers) and applying them to files (search.llm.patch)."""

import pytest

from search.llm.answers import Edit, PatchError, parse_answer
from search.llm.patch import apply_answer

EDITABLE = ["train/train.py", "model/gpt.py"]

TRAIN = '''\
"""Seed training script."""

import math

MATRIX_LR = 0.04  # Muon learning rate
WARMDOWN_RATIO = 0.4  # fraction of the budget for the warmdown


def lr_multiplier(progress):
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    return (1.0 - progress) / WARMDOWN_RATIO


def train(ctx):
    model = build(ctx)
    for step in ctx.steps():
        loss = model(next(ctx.batches))
        loss.backward()
        ctx.record_loss(loss)
    return model
'''

GPT = '''\
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.proj(self.fc(x).relu().square())
'''

FILES = {"train/train.py": TRAIN, "model/gpt.py": GPT}


def apply(text, files=FILES, **kwargs):
    return apply_answer(dict(files), text, EDITABLE, **kwargs)


def error(text, files=FILES, **kwargs) -> PatchError:
    with pytest.raises(PatchError) as info:
        apply(text, files, **kwargs)
    return info.value


# ---------------------------------------------------------------------------------------------
# Valid answers


def test_single_block_changes_only_its_lines():
    answer = """DESCRIPTION: Raise the Muon learning rate to 0.05
The matrices are under-trained at 0.04.

train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = 0.05  # Muon learning rate
>>>>>>> REPLACE
"""
    result = apply(answer)
    assert result.changed == ["train/train.py"]
    assert result.files["train/train.py"] == TRAIN.replace("0.04", "0.05")
    assert result.files["model/gpt.py"] == GPT
    assert result.description == "Raise the Muon learning rate to 0.05"
    assert result.rationale == "The matrices are under-trained at 0.04."


def test_several_blocks_across_two_files_apply_in_order():
    answer = """DESCRIPTION: GELU MLP and a longer warmdown

model/gpt.py
<<<<<<< SEARCH
        return self.proj(self.fc(x).relu().square())
=======
        return self.proj(nn.functional.gelu(self.fc(x)))
>>>>>>> REPLACE

train/train.py
<<<<<<< SEARCH
WARMDOWN_RATIO = 0.4  # fraction of the budget for the warmdown
=======
WARMDOWN_RATIO = 0.5  # fraction of the budget for the warmdown
>>>>>>> REPLACE

train/train.py
<<<<<<< SEARCH
WARMDOWN_RATIO = 0.5  # fraction of the budget for the warmdown
=======
WARMDOWN_RATIO = 0.6  # fraction of the budget for the warmdown
>>>>>>> REPLACE
"""
    result = apply(answer)
    assert result.changed == ["model/gpt.py", "train/train.py"]
    assert "gelu(self.fc(x))" in result.files["model/gpt.py"]
    assert "WARMDOWN_RATIO = 0.6" in result.files["train/train.py"]  # the second saw the first


def test_block_without_a_file_line_reuses_the_previous_file():
    answer = """DESCRIPTION: two constants
train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = 0.03  # Muon learning rate
>>>>>>> REPLACE
<<<<<<< SEARCH
WARMDOWN_RATIO = 0.4  # fraction of the budget for the warmdown
=======
WARMDOWN_RATIO = 0.3  # fraction of the budget for the warmdown
>>>>>>> REPLACE
"""
    new = apply(answer).files["train/train.py"]
    assert "MATRIX_LR = 0.03" in new and "WARMDOWN_RATIO = 0.3" in new


def test_replace_can_delete_lines_and_markers_may_have_5_to_9_characters():
    answer = """DESCRIPTION: drop the math import
train/train.py
<<<<< SEARCH
import math

=========
>>>>>>>>> REPLACE
"""
    assert "import math" not in apply(answer).files["train/train.py"]


# ---------------------------------------------------------------------------------------------
# Tolerant matching


def test_trailing_spaces_in_search_still_match():
    answer = ("DESCRIPTION: lr\ntrain/train.py\n<<<<<<< SEARCH\n"
              "MATRIX_LR = 0.04  # Muon learning rate   \n=======\n"
              "MATRIX_LR = 0.05  # Muon learning rate\n>>>>>>> REPLACE\n")
    assert "MATRIX_LR = 0.05  # Muon" in apply(answer).files["train/train.py"]


def test_indentation_shift_is_matched_and_the_replacement_reindented():
    # The model dropped the 4-space indentation of the function body.
    answer = """DESCRIPTION: clip gradients
train/train.py
<<<<<<< SEARCH
loss = model(next(ctx.batches))
loss.backward()
=======
loss = model(next(ctx.batches))
loss.backward()
if step % 2 == 0:
    clip(model)
>>>>>>> REPLACE
"""
    new = apply(answer).files["train/train.py"]
    assert ("        loss.backward()\n        if step % 2 == 0:\n            clip(model)\n"
            "        ctx.record_loss(loss)\n") in new


def test_over_indented_search_is_dedented():
    search = "\n".join("    " + l for l in ["MATRIX_LR = 0.04  # Muon learning rate"])
    answer = (f"DESCRIPTION: lr\ntrain/train.py\n<<<<<<< SEARCH\n{search}\n=======\n"
              "    MATRIX_LR = 0.02  # Muon learning rate\n>>>>>>> REPLACE\n")
    assert "\nMATRIX_LR = 0.02  # Muon learning rate\n" in apply(answer).files["train/train.py"]


def test_blank_line_differences_are_ignored():
    answer = """DESCRIPTION: constant schedule
train/train.py
<<<<<<< SEARCH
def lr_multiplier(progress):
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0

    return (1.0 - progress) / WARMDOWN_RATIO
=======
def lr_multiplier(progress):
    return 1.0
>>>>>>> REPLACE
"""
    new = apply(answer).files["train/train.py"]
    assert "def lr_multiplier(progress):\n    return 1.0\n\n\ndef train" in new


def test_crlf_answer_and_crlf_file():
    crlf_files = {"train/train.py": TRAIN.replace("\n", "\r\n"), "model/gpt.py": GPT}
    answer = ("DESCRIPTION: lr\r\ntrain/train.py\r\n<<<<<<< SEARCH\r\n"
              "MATRIX_LR = 0.04  # Muon learning rate\r\n=======\r\n"
              "MATRIX_LR = 0.05  # Muon learning rate\r\n>>>>>>> REPLACE\r\n")
    new = apply(answer, crlf_files).files["train/train.py"]
    assert new == TRAIN.replace("0.04", "0.05").replace("\n", "\r\n")  # keeps its line ends


# ---------------------------------------------------------------------------------------------
# Failures and their feedback


def test_no_match_names_the_file_and_shows_the_closest_lines():
    answer = """DESCRIPTION: lr
train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.02  # Muon learning rate
WARMDOWN_RATIO = 0.4  # fraction of the budget for the warmdown
=======
MATRIX_LR = 0.05  # Muon learning rate
>>>>>>> REPLACE
"""
    exc = error(answer)
    assert exc.kind == "no_match"
    assert "train/train.py" in exc.feedback
    assert "MATRIX_LR = 0.02" in exc.feedback  # quotes the block
    assert "   5| MATRIX_LR = 0.04  # Muon learning rate" in exc.feedback  # the real lines
    assert "   6| WARMDOWN_RATIO = 0.4" in exc.feedback
    assert str(exc) == exc.feedback


def test_no_match_says_when_the_lines_are_in_another_file():
    answer = """DESCRIPTION: wrong file
train/train.py
<<<<<<< SEARCH
        self.fc = nn.Linear(width, 4 * width)
=======
        self.fc = nn.Linear(width, 3 * width)
>>>>>>> REPLACE
"""
    exc = error(answer)
    assert exc.kind == "no_match"
    assert "in model/gpt.py, not in train/train.py" in exc.feedback


def test_no_match_says_when_an_earlier_edit_changed_the_lines():
    block = ("train/train.py\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon learning rate\n=======\n"
             "MATRIX_LR = 0.05  # Muon learning rate\n>>>>>>> REPLACE\n")
    exc = error("DESCRIPTION: twice\n" + block + block)
    assert exc.kind == "no_match"
    assert "SEARCH block 2" in exc.feedback and "earlier edit" in exc.feedback


def test_ambiguous_search_reports_how_many_places():
    answer = """DESCRIPTION: ambiguous
train/train.py
<<<<<<< SEARCH
        return 1.0
=======
        return 0.9
>>>>>>> REPLACE
"""
    files = {"train/train.py": TRAIN + "\n\ndef other():\n    if True:\n        return 1.0\n",
             "model/gpt.py": GPT}
    exc = error(answer, files)
    assert exc.kind == "ambiguous"
    assert "matches 2 places" in exc.feedback and "train/train.py" in exc.feedback


def test_edit_outside_the_surface_names_the_path_and_the_allowed_files():
    answer = """DESCRIPTION: cheat
eval/metric.py
<<<<<<< SEARCH
return bpb
=======
return 0.0
>>>>>>> REPLACE
"""
    exc = error(answer)
    assert exc.kind == "outside_surface"
    assert "eval/metric.py" in exc.feedback
    assert "train/train.py, model/gpt.py" in exc.feedback


def test_path_escaping_the_tree_is_outside_the_surface():
    answer = ("DESCRIPTION: x\nFILE: ../train/train.py\n```python\nx = 1\n```\n")
    assert error(answer).kind == "outside_surface"


def test_prefixed_or_bare_paths_map_to_the_one_editable_file():
    answer = """DESCRIPTION: lr
./work/train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = 0.05  # Muon learning rate
>>>>>>> REPLACE
gpt.py
<<<<<<< SEARCH
        self.fc = nn.Linear(width, 4 * width)
=======
        self.fc = nn.Linear(width, 2 * width)
>>>>>>> REPLACE
"""
    assert apply(answer).changed == ["model/gpt.py", "train/train.py"]


def test_noop_answer_is_refused():
    answer = """DESCRIPTION: nothing
train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = 0.04  # Muon learning rate
>>>>>>> REPLACE
"""
    assert error(answer).kind == "noop"


def test_answer_without_edits_gets_the_format_back():
    exc = error("DESCRIPTION: I would raise the LR\nJust set MATRIX_LR to 0.05.\n")
    assert exc.kind == "no_edit"
    assert "<<<<<<< SEARCH" in exc.feedback and "FILE:" in exc.feedback


def test_syntax_error_names_the_file_and_line():
    answer = """DESCRIPTION: broken
train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = (0.04  # Muon learning rate
>>>>>>> REPLACE
"""
    exc = error(answer)
    assert exc.kind == "syntax"
    assert "train/train.py" in exc.feedback and "line 5" in exc.feedback
    assert apply(answer, check_syntax=False).changed == ["train/train.py"]


def test_empty_search_on_an_existing_file_is_malformed():
    answer = "DESCRIPTION: x\ntrain/train.py\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n"
    exc = error(answer)
    assert exc.kind == "malformed" and "FILE" in exc.feedback


def test_empty_search_for_a_new_file_outside_the_surface_is_refused():
    answer = "DESCRIPTION: x\ntrain/helpers.py\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n"
    assert error(answer).kind == "outside_surface"


def test_truncated_block_is_malformed():
    answer = ("DESCRIPTION: x\ntrain/train.py\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon learning "
              "rate\n=======\nMATRIX_LR = 0.05")
    exc = error(answer)
    assert exc.kind == "malformed" and "REPLACE" in exc.feedback and "cut off" in exc.feedback


def test_block_without_a_file_is_malformed():
    answer = ("DESCRIPTION: x\n<<<<<<< SEARCH\nMATRIX_LR = 0.04\n=======\nMATRIX_LR = 1\n"
              ">>>>>>> REPLACE\n")
    exc = error(answer)
    assert exc.kind == "malformed" and "names no file" in exc.feedback


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        PatchError("oops", "x")


# ---------------------------------------------------------------------------------------------
# Whole files and fences


def test_whole_file_after_a_file_line():
    new_gpt = GPT.replace("4 * width", "3 * width")
    answer = (f"DESCRIPTION: narrower MLP\nWhy: speed.\n\nFILE: model/gpt.py\n"
              f"```python\n{new_gpt}```\n")
    result = apply(answer)
    assert result.files["model/gpt.py"] == new_gpt
    assert result.changed == ["model/gpt.py"]
    assert result.rationale == "Why: speed."


def test_whole_file_with_the_path_in_the_fence_info_string():
    new_gpt = GPT.replace("4 * width", "3 * width")
    answer = f"Description: narrower MLP\n\n```python model/gpt.py\n{new_gpt}```\n"
    assert apply(answer).files["model/gpt.py"] == new_gpt


def test_unclosed_whole_file_is_malformed():
    answer = f"DESCRIPTION: x\nFILE: model/gpt.py\n```python\n{GPT}"
    assert error(answer).kind == "malformed"


def test_code_fence_without_a_file_is_not_an_edit():
    answer = "DESCRIPTION: idea\nFor example:\n```python\nMATRIX_LR = 0.05\n```\n"
    assert error(answer).kind == "no_edit"


def test_search_replace_inside_a_fence_with_the_path_as_first_line():
    answer = """DESCRIPTION: lr

```python
train/train.py
<<<<<<< SEARCH
MATRIX_LR = 0.04  # Muon learning rate
=======
MATRIX_LR = 0.05  # Muon learning rate
>>>>>>> REPLACE
```

```python
model/gpt.py
<<<<<<< SEARCH
        self.proj = nn.Linear(4 * width, width)
=======
        self.proj = nn.Linear(4 * width, width, bias=False)
>>>>>>> REPLACE
```
"""
    assert apply(answer).changed == ["model/gpt.py", "train/train.py"]


@pytest.mark.parametrize("header", [
    "### train/train.py", "`train/train.py`", "File: train/train.py", "**File:** `train/train.py`",
    "train/train.py:", "train/train.py\n```python", "```python train/train.py",
])
def test_file_header_variations(header):
    answer = (f"DESCRIPTION: lr\n{header}\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon learning "
              "rate\n=======\nMATRIX_LR = 0.05  # Muon learning rate\n>>>>>>> REPLACE\n```\n")
    parsed = parse_answer(answer)
    assert [e.path for e in parsed.edits] == ["train/train.py"]
    assert "MATRIX_LR = 0.05" in apply(answer).files["train/train.py"]


# ---------------------------------------------------------------------------------------------
# Description and rationale


BLOCK = ("train/train.py\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon learning rate\n=======\n"
         "MATRIX_LR = 0.05  # Muon learning rate\n>>>>>>> REPLACE\n")


@pytest.mark.parametrize("line", [
    "DESCRIPTION: Raise the LR", "Description: Raise the LR", "**Description:** Raise the LR",
    "**DESCRIPTION**: Raise the LR", "## Description: Raise the LR", "DESCRIPTION:\nRaise the LR",
    "## Description\n\nRaise the LR",
])
def test_description_variations(line):
    parsed = parse_answer(f"{line}\nThe rationale.\n\n{BLOCK}")
    assert parsed.description == "Raise the LR"
    assert parsed.rationale == "The rationale."


def test_rationale_is_everything_before_the_first_edit_but_the_description():
    parsed = parse_answer("<think>private musing</think>\nFirst reason.\n\nDESCRIPTION: Raise LR\n"
                          f"Second reason.\n\n{BLOCK}\nTrailing remark.\n")
    assert parsed.description == "Raise LR"
    assert parsed.rationale == "First reason.\n\nSecond reason."
    assert parsed.edits == [Edit("train/train.py", "MATRIX_LR = 0.04  # Muon learning rate",
                                 "MATRIX_LR = 0.05  # Muon learning rate")]


def test_description_after_the_edits_or_missing():
    assert parse_answer(f"Because.\n{BLOCK}DESCRIPTION: Raise LR\n").description == "Raise LR"
    assert parse_answer(f"Raise the LR a bit.\nBecause.\n{BLOCK}").description == \
        "Raise the LR a bit."


def test_long_description_is_cut_to_one_short_line():
    parsed = parse_answer("DESCRIPTION: " + "word " * 60 + f"\n{BLOCK}")
    assert len(parsed.description) <= 120 and parsed.description.endswith("...")
