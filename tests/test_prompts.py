"""search/llm/prompts and templates/: templates and the chat messages of the LLM operators."""

import string

import pytest

from search.llm import prompts
from search.llm.patch import apply_answer
from search.llm.prompts import (VariantView, conflict_messages, crossover_messages, mutation_messages,
                            render, retry_messages)

EDITABLE = ["train/train.py", "model/gpt.py"]
PROGRAM = "# Program\n\nTry **rotary base** changes; costs ${cost} are $5 per run.\n"

TRAIN = '''\
CONFIG = {"lr": 0.04, "betas": (0.9, 0.95)}  # braces must survive
MATRIX_LR = 0.04  # Muon learning rate


def train(ctx):
    name = f"{ctx.device}-{MATRIX_LR}"
    return name
'''
GPT = "class GPT:\n    width = 512  # model width\n"


def view(name, files=None, description="seed", val_bpb=1.05, mem=20480.0, history=None):
    return VariantView(name=name, files=files or {"train/train.py": TRAIN, "model/gpt.py": GPT},
                       description=description, val_bpb=val_bpb, peak_mem_mb=mem, status="ok",
                       history=history or [])


PARENT = view("v0007", description="Longer warmdown (0.6)", val_bpb=1.0123,
              history=["seed: val_bpb 1.0500", "Longer warmdown (0.6): val_bpb 1.0123"])
FRONT = [view("v0002", {}, "Narrow MLP | 3x", 1.0400, 15000.0), PARENT,
         view("v0009", {}, "Unmeasured", None, None)]
FAILURES = [("Depth 16", "crash: CUDA out of memory\n" + "x" * 1000 + "\nTAIL_OF_LOG")]
PINNED = {"DEPTH": 4, "COMPILE": False}


def user(messages):
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def test_mutation_prompt_holds_program_parent_code_front_failures_and_pinned():
    messages = mutation_messages(PROGRAM, PARENT, FRONT, FAILURES, EDITABLE, PINNED, 300)
    text = user(messages)
    assert PROGRAM.strip() in text  # verbatim, dollar signs and braces included
    assert TRAIN.rstrip() in text and GPT.rstrip() in text  # the parent's full files
    assert "1. seed: val_bpb 1.0500\n2. Longer warmdown (0.6): val_bpb 1.0123" in text
    assert "| v0007 (parent) | 1.0123 | 20480 | Longer warmdown (0.6) |" in text
    assert "| v0002 | 1.0400 | 15000 | Narrow MLP \\| 3x |" in text
    assert "| v0009 | n/a | n/a | Unmeasured |" in text
    # best val_bpb first, unmeasured last
    assert text.index("v0007 (parent) |") < text.index("v0002 |") < text.index("v0009 |")
    assert "Depth 16: crash: CUDA out of memory" in text and "TAIL_OF_LOG" in text
    assert "x" * 400 not in text  # a long reason is cut
    assert "`DEPTH = 4`" in text and "`COMPILE = False`" in text and "no effect" in text
    assert "300 seconds" in text


def test_system_prompt_states_rules_format_and_surface():
    system = mutation_messages(PROGRAM, PARENT, [], [], EDITABLE, {}, 300)[0]["content"]
    for needle in ("`train/train.py`", "`model/gpt.py`", "train(ctx)", "<<<<<<< SEARCH",
                   "=======", ">>>>>>> REPLACE", "DESCRIPTION:", "FILE: <path>",
                   "300 seconds (5 minutes)"):
        assert needle in system
    assert "data files" in system  # never read them


def test_front_of_other_variants_shows_no_code():
    other = view("v0003", {"train/train.py": "SECRET_OTHER_CODE = 1\n"}, "other", 1.03)
    text = user(mutation_messages(PROGRAM, PARENT, [other], [], EDITABLE, {}, 60))
    assert "v0003" in text and "SECRET_OTHER_CODE" not in text


def test_empty_sections_say_so():
    text = user(mutation_messages(PROGRAM, view("v0000"), [], [], EDITABLE, {}, 60))
    assert "(none)" in text  # failures
    assert "every constant in the files takes effect" in text
    assert "nothing has been measured yet" in text
    assert "(the seed: no ancestors)" in text


def test_no_prompt_mentions_the_test_metric():
    ancestor = view("v0001")
    b = view("v0008", {"train/train.py": TRAIN.replace("0.04", "0.05"), "model/gpt.py": GPT},
             "Higher LR", 1.02)
    all_messages = [
        mutation_messages(PROGRAM, PARENT, FRONT, FAILURES, EDITABLE, PINNED, 300),
        crossover_messages(PROGRAM, PARENT, b, ancestor, FRONT, FAILURES, EDITABLE, PINNED, 300),
        crossover_messages(PROGRAM, PARENT, b, None, FRONT, FAILURES, EDITABLE, PINNED, 300),
        conflict_messages(PROGRAM, PARENT, b, {"train/train.py": "<<<<<<< a\n=======\n>>>>>>> b\n"},
                          EDITABLE, PINNED, 300),
    ]
    all_messages.append(retry_messages(all_messages[0], "answer", "feedback"))
    for messages in all_messages:
        for message in messages:
            assert "test_bpb" not in message["content"]
    assert not hasattr(PARENT, "test_bpb")


def test_crossover_shows_a_in_full_and_both_changes_against_the_ancestor():
    ancestor = view("v0001", {"train/train.py": TRAIN, "model/gpt.py": GPT})
    a = view("v0005", {"train/train.py": TRAIN, "model/gpt.py": GPT.replace("512", "640")},
             "Wider model", 1.03)
    b = view("v0006", {"train/train.py": TRAIN.replace("0.04  #", "0.06  #"), "model/gpt.py": GPT},
             "Higher LR", 1.02)
    text = user(crossover_messages(PROGRAM, a, b, ancestor, FRONT, FAILURES, EDITABLE, PINNED,
                                   300))
    assert PROGRAM.strip() in text
    assert "width = 640" in text and "CONFIG = {" in text  # A's files
    assert "-    width = 512  # model width\n+    width = 640  # model width" in text
    assert ("-MATRIX_LR = 0.04  # Muon learning rate\n"
            "+MATRIX_LR = 0.06  # Muon learning rate") in text
    assert "--- v0001/model/gpt.py" in text and "+++ v0006/train/train.py" in text
    assert "Wider model" in text and "Higher LR" in text
    assert "`DEPTH = 4`" in text


def test_crossover_without_ancestor_diffs_b_against_a():
    a = view("v0005")
    b = view("v0006", {"train/train.py": TRAIN.replace("0.04  #", "0.06  #"), "model/gpt.py": GPT})
    text = user(crossover_messages(PROGRAM, a, b, None, [], [], EDITABLE, {}, 300))
    assert "--- v0005/train/train.py" in text and "+++ v0006/train/train.py" in text
    assert "+MATRIX_LR = 0.06" in text


def test_conflict_prompt_shows_marked_files_and_asks_for_whole_files():
    conflicted = {"train/train.py": ("<<<<<<< v0005\nMATRIX_LR = 0.05\n=======\nMATRIX_LR = 0.06\n"
                                     ">>>>>>> v0006\n")}
    a, b = view("v0005", description="LR 0.05"), view("v0006", description="LR 0.06")
    text = user(conflict_messages(PROGRAM, a, b, conflicted, EDITABLE, PINNED, 300))
    assert PROGRAM.strip() in text
    assert conflicted["train/train.py"].rstrip() in text
    assert "- train/train.py" in text and "FILE: <path>" in text
    assert "LR 0.05" in text and "LR 0.06" in text and "`DEPTH = 4`" in text


def test_an_answer_in_the_requested_conflict_format_applies():
    merged = {"train/train.py": "<<<<<<< a\nLR = 1\n=======\nLR = 2\n>>>>>>> b\n",
              "model/gpt.py": GPT}
    answer = ("DESCRIPTION: both LRs averaged\nMiddle ground.\n\n"
              "FILE: train/train.py\n```python\nLR = 1.5\n```\n")
    assert apply_answer(merged, answer, EDITABLE).files["train/train.py"] == "LR = 1.5\n"


def test_file_holding_backtick_fences_gets_a_longer_fence():
    files = {"train/train.py": 'DOC = """\n```python\nx = 1\n```\n"""\n', "model/gpt.py": GPT}
    text = user(mutation_messages(PROGRAM, view("v0001", files), [], [], EDITABLE, {}, 60))
    assert "````python\nDOC" in text and '"""\n````' in text


def test_retry_appends_answer_and_feedback_without_touching_the_original():
    first = mutation_messages(PROGRAM, PARENT, [], [], EDITABLE, {}, 60)
    snapshot = [dict(m) for m in first]
    retry = retry_messages(first, "my answer", "SEARCH block 1 for train/train.py matches nothing")
    assert first == snapshot
    assert retry[:2] == first
    assert retry[2] == {"role": "assistant", "content": "my answer"}
    assert retry[3]["role"] == "user"
    assert "SEARCH block 1 for train/train.py matches nothing" in retry[3]["content"]


def test_render_raises_on_a_missing_placeholder():
    with pytest.raises(KeyError, match=r"\$feedback"):
        render("retry")


def test_render_raises_on_an_unused_value():
    with pytest.raises(KeyError, match=r"\$typo"):
        render("retry", feedback="x", typo="y")


def test_render_raises_on_an_unknown_template():
    with pytest.raises(FileNotFoundError, match="nope.md"):
        render("nope")


def test_code_with_braces_and_dollars_survives_rendering():
    code = 'd = {"a": {1, 2}}\nprint(f"{d!r} costs $5 and ${x}")\n'
    assert code.strip() in render("retry", feedback=code)


def test_every_template_has_only_valid_placeholders():
    for name in ("system", "mutation", "crossover", "merge_conflict", "retry"):
        template = prompts._template(name)
        assert isinstance(template, string.Template)
        for match in template.pattern.finditer(template.template):
            assert match.group("invalid") is None, f"stray $ in {name}.md"
