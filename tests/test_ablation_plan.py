"""The ablation's pure plan: hunks, applying and reverting them, changes and candidates."""

from __future__ import annotations

import random

import pytest

from search.ablation.plan import (
    ADD_ONE, LEAVE_ONE_OUT, ChangeError, Step, apply_hunk, apply_hunks, build_candidates, check_files, decompose,
    diff_hunks, files_hunks, unbound_names,
)

TRAIN = "train/train.py"
SEED = """\
\"\"\"A tiny training script.\"\"\"
import math

LR = 0.04  # learning rate
WARMDOWN = 0.4  # fraction of the budget
DEPTH = 4  # blocks


def schedule(progress):
    scale = 1.0
    if progress > 1 - WARMDOWN:
        scale = (1 - progress) / WARMDOWN
    return LR * scale


def train(steps):
    total = 0.0
    for step in range(steps):
        total += schedule(step / steps)
    return math.sqrt(total) * DEPTH
"""


def edit(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def files(text: str) -> dict[str, str]:
    return {TRAIN: text}


# --------------------------------------------------------------------------- hunks

def test_separate_edits_are_separate_hunks_with_their_lines():
    new = edit(SEED, ("LR = 0.04", "LR = 0.4"), ("DEPTH = 4", "DEPTH = 6"))
    hunks = diff_hunks(TRAIN, SEED, new)
    assert [(h.line, h.old, h.new) for h in hunks] == [
        (4, ("LR = 0.04  # learning rate\n",), ("LR = 0.4  # learning rate\n",)),
        (6, ("DEPTH = 4  # blocks\n",), ("DEPTH = 6  # blocks\n",))]
    assert hunks[0].first_changed_line == "LR = 0.4  # learning rate"
    assert "-LR = 0.04" in hunks[0].diff() and "+LR = 0.4" in hunks[0].diff() and "@@ train/train.py line 4 @@" in \
        hunks[0].diff()


def test_edits_separated_only_by_blank_lines_are_one_hunk():
    new = edit(SEED, ("    return LR * scale\n", "    return LR * scale * 2\n"),
               ("def train(steps):\n", "def train(steps, k=1):\n"))
    hunks = diff_hunks(TRAIN, SEED, new)
    assert len(hunks) == 1
    assert hunks[0].old[0] == "    return LR * scale\n" and hunks[0].old[-1] == "def train(steps):\n"


def test_a_rewritten_block_stays_one_hunk():
    new = edit(SEED, ("    if progress > 1 - WARMDOWN:\n        scale = (1 - progress) / WARMDOWN\n",
                      "    for _ in range(2):\n        scale *= 0.5 + progress\n"))
    assert len(diff_hunks(TRAIN, SEED, new)) == 1


def test_removed_lines_are_named_as_removed():
    new = edit(SEED, ("WARMDOWN = 0.4  # fraction of the budget\n", ""))
    (hunk,) = diff_hunks(TRAIN, SEED, new)
    assert hunk.new == () and hunk.first_changed_line == "removed: WARMDOWN = 0.4  # fraction of the budget"


def _random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(["\n", f"x{rng.randrange(10 ** 6)} = 1\n"]) if rng.random() < 0.15 else
                   f"x{rng.randrange(10 ** 6)} = {i}\n" for i in range(n))


def _random_edit(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randrange(1, 5)):
        i = rng.randrange(len(lines) + 1)
        op = rng.choice(["insert", "delete", "replace"])
        if op == "insert" or i == len(lines):
            lines[i:i] = [f"new{rng.randrange(10 ** 6)} = 0\n" for _ in range(rng.randrange(1, 3))]
        elif op == "delete":
            del lines[i:i + rng.randrange(1, 3)]
        else:
            lines[i] = f"changed{rng.randrange(10 ** 6)} = 0\n"
    return "".join(lines)


def test_hunks_apply_forward_and_backward_on_many_random_edits():
    rng = random.Random(7)
    for _ in range(200):
        old = _random_text(rng, rng.randrange(1, 40))
        new = _random_edit(rng, old)
        hunks = files_hunks(files(old), files(new))
        assert apply_hunks(files(old), hunks) == files(new)
        assert apply_hunks(files(new), hunks, reverse=True) == files(old)


def test_each_hunk_reverts_alone_in_the_full_variant_and_applies_alone_to_the_seed():
    new = edit(SEED, ("LR = 0.04", "LR = 0.4"), ("WARMDOWN = 0.4", "WARMDOWN = 0.2"), ("DEPTH = 4", "DEPTH = 6"))
    hunks = diff_hunks(TRAIN, SEED, new)
    assert len(hunks) == 3  # three consecutive lines, each edited in place: one hunk each
    for k, hunk in enumerate(hunks):
        reverted = apply_hunk(new, hunk.inverse())
        assert reverted == edit(new, *[(h.new[0], h.old[0]) for h in hunks[k:k + 1]])
        added = apply_hunk(SEED, hunk)
        assert added == edit(SEED, (hunk.old[0], hunk.new[0]))


def test_a_hunk_finds_its_lines_after_lines_were_added_above():
    new = edit(SEED, ("    return LR * scale\n", "    return LR * scale * 2\n"))
    (hunk,) = diff_hunks(TRAIN, SEED, new)
    shifted = "# a header\n# another\n" + SEED
    assert apply_hunk(shifted, hunk) == "# a header\n# another\n" + new


def test_a_hunk_whose_surroundings_were_edited_falls_back_to_one_line_of_context():
    new = edit(SEED, ("WARMDOWN = 0.4", "WARMDOWN = 0.2"))
    (hunk,) = diff_hunks(TRAIN, SEED, new)
    elsewhere = edit(SEED, ("import math\n", "import math\nimport os\n"), ("DEPTH = 4  # blocks\n\n", "DEPTH = 4  # blocks\nX = 1\n"))
    assert "WARMDOWN = 0.2" in apply_hunk(elsewhere, hunk)


def test_a_hunk_whose_lines_are_gone_or_ambiguous_does_not_apply():
    new = edit(SEED, ("LR = 0.04", "LR = 0.4"))
    (hunk,) = diff_hunks(TRAIN, SEED, new)
    with pytest.raises(ChangeError, match="are not there"):
        apply_hunk(edit(SEED, ("LR = 0.04", "LR = 0.05")), hunk)
    twice = "a\nb\nc\nd\n" + "a\nb\nc\nd\n"
    (dup,) = diff_hunks("f.py", "b\n", "B\n")
    with pytest.raises(ChangeError, match="2 places"):
        apply_hunk(twice, dup)


def test_an_insertion_at_the_start_stays_at_the_start():
    new = "# header\n" + SEED
    (hunk,) = diff_hunks(TRAIN, SEED, new)
    assert hunk.old == () and hunk.before == ((), ())
    assert apply_hunk(SEED, hunk) == new
    assert apply_hunk(new, hunk.inverse()) == SEED


def test_apply_hunks_names_a_missing_file():
    (hunk,) = diff_hunks("model/gpt.py", "a = 1\n", "a = 2\n")
    with pytest.raises(ChangeError, match="model/gpt.py is not among"):
        apply_hunks(files(SEED), [hunk])


# --------------------------------------------------------------------------- checks

def test_unbound_names_catch_a_half_done_rename_but_not_builtins_or_bindings():
    assert unbound_names(SEED) == set()
    half = edit(SEED, ("    total = 0.0\n", "    acc = 0.0\n"))
    assert unbound_names(half) == {"total"}  # `total += ...` reads it: an augmented assignment binds nothing new
    assert unbound_names("from os import *\nprint(anything)\n") == set()
    assert unbound_names("try:\n    pass\nexcept Exception as e:\n    print(e, len([k for k in ()]))\n") == set()
    assert unbound_names("def f(a, *rest, key=None, **kw):\n    global G\n    return a, rest, key, kw, G\n") == set()


def test_check_files_reports_syntax_and_new_undefined_names_only():
    assert check_files(files(SEED), files(SEED)) is None
    broken = edit(SEED, ("def train(steps):", "def train(steps)"))
    assert "does not compile: line" in check_files(files(broken), files(SEED))
    renamed = edit(SEED, ("    total = 0.0\n", "    acc = 0.0\n"))
    assert check_files(files(renamed), files(SEED)) == f"{TRAIN} reads total, which nothing defines"
    # a name the reference already could not resolve is not this candidate's fault
    odd = SEED + "print(CONSTANT_FROM_NOWHERE)\n"
    assert check_files(files(odd + "x = 1\n"), files(odd)) is None
    assert check_files({"notes.txt": "(((", TRAIN: SEED}, files(SEED)) is None


# --------------------------------------------------------------------------- changes

RENAMED = edit(SEED, ("    total = 0.0\n", "    acc = 0.0\n"), ("        total += schedule", "        acc += schedule"),
               ("    return math.sqrt(total)", "    return math.sqrt(acc)"))
LR_TEN = edit(RENAMED, ("LR = 0.04", "LR = 0.4"))


def steps_of(*versions: tuple[str, str, str]) -> list[Step]:
    """(name, description, text) per step, after the seed."""
    out, parent = [], SEED
    for name, description, text in versions:
        out.append(Step(name, description, files(parent), files(text)))
        parent = text
    return out


def test_a_rename_stays_one_change_and_independent_constants_split():
    two_constants = edit(RENAMED, ("LR = 0.04", "LR = 0.4"), ("DEPTH = 4", "DEPTH = 6"))
    plan = decompose(steps_of(("v0001", "rename total", RENAMED), ("v0002", "bigger LR and deeper", two_constants)))
    assert [(c.id, c.kind) for c in plan.changes] == [("v0001", "step"), ("v0002.1", "hunk"), ("v0002.2", "hunk")]
    assert plan.changes[0].label == "v0001: rename total | acc = 0.0 (+2 more hunks)"
    assert plan.changes[1].label == "v0002: bigger LR and deeper | LR = 0.4 # learning rate"
    assert plan.changes[2].label.endswith("| DEPTH = 6 # blocks")
    assert any("v0001" in n and "reads" in n for n in plan.notes)  # why the rename was kept whole


def test_hunks_are_not_split_when_asked_or_when_they_exceed_max_changes():
    two_constants = edit(SEED, ("LR = 0.04", "LR = 0.4"), ("DEPTH = 4", "DEPTH = 6"))
    steps = steps_of(("v0001", "two constants", two_constants))
    assert [c.id for c in decompose(steps, split_hunks=False).changes] == ["v0001"]
    plan = decompose(steps, max_changes=1)
    assert [c.id for c in plan.changes] == ["v0001"] and "one change per step" in plan.notes[-1]


def test_steps_beyond_max_changes_are_joined_from_the_seed_side():
    v1 = edit(SEED, ("LR = 0.04", "LR = 0.05"))
    v2 = edit(v1, ("LR = 0.05", "LR = 0.06"))
    v3 = edit(v2, ("DEPTH = 4", "DEPTH = 5"))
    plan = decompose(steps_of(("v0001", "a", v1), ("v0002", "b", v2), ("v0003", "c", v3)), max_changes=2)
    assert [(c.id, c.kind, c.steps) for c in plan.changes] == [
        ("v0001..v0002", "joined", ("v0001", "v0002")), ("v0003", "step", ("v0003",))]
    assert plan.changes[0].hunks[0].old == ("LR = 0.04  # learning rate\n",)
    assert plan.changes[0].hunks[0].new == ("LR = 0.06  # learning rate\n",)
    with pytest.raises(ValueError, match="at least 1"):
        decompose([], max_changes=0)


def test_a_step_that_changes_nothing_is_noted_not_a_change():
    plan = decompose(steps_of(("v0001", "same", SEED), ("v0002", "lr", LR_TEN)))
    assert [c.id for c in plan.changes] == ["v0002"]
    assert "v0001 changes no editable line" in plan.notes[0]


# --------------------------------------------------------------------------- candidates

def test_leave_one_out_and_add_one_of_two_independent_steps():
    plan = decompose(steps_of(("v0001", "rename", RENAMED), ("v0002", "lr", LR_TEN)))
    cands = {(c.change, c.kind): c for c in build_candidates(files(SEED), files(LR_TEN), plan.changes)}
    assert cands[("v0001", LEAVE_ONE_OUT)].files == files(edit(SEED, ("LR = 0.04", "LR = 0.4")))
    assert cands[("v0002", LEAVE_ONE_OUT)].files == files(RENAMED)
    assert cands[("v0001", ADD_ONE)].files == files(RENAMED)
    assert cands[("v0002", ADD_ONE)].files == files(edit(SEED, ("LR = 0.04", "LR = 0.4")))
    assert all(c.skipped is None for c in cands.values())


def test_a_step_that_edits_an_earlier_step_cannot_be_taken_apart_both_ways():
    v1 = edit(SEED, ("LR = 0.04", "LR = 0.05"))
    v2 = edit(v1, ("LR = 0.05", "LR = 0.06"))
    plan = decompose(steps_of(("v0001", "a", v1), ("v0002", "b", v2)))
    cands = {(c.change, c.kind): c for c in build_candidates(files(SEED), files(v2), plan.changes)}
    assert cands[("v0001", LEAVE_ONE_OUT)].files is None
    assert "does not apply to the variant" in cands[("v0001", LEAVE_ONE_OUT)].skipped
    assert "does not apply to the seed" in cands[("v0002", ADD_ONE)].skipped
    assert cands[("v0002", LEAVE_ONE_OUT)].files == files(v1) and cands[("v0001", ADD_ONE)].files == files(v1)


def test_candidates_that_break_the_code_are_skipped_with_the_reason():
    helper = edit(SEED, ("def train(steps):\n", "def helper(v):\n    return v * 2\n\n\ndef train(steps):\n"))
    uses = edit(helper, ("    total = 0.0\n", "    total = helper(0.0)\n"))
    plan = decompose(steps_of(("v0001", "helper", helper), ("v0002", "use it", uses)))
    cands = {(c.change, c.kind): c for c in build_candidates(files(SEED), files(uses), plan.changes)}
    assert cands[("v0001", LEAVE_ONE_OUT)].skipped == f"{TRAIN} reads helper, which nothing defines"
    assert cands[("v0002", ADD_ONE)].skipped == f"{TRAIN} reads helper, which nothing defines"
    body = "def f():\n    return 1\n"
    with_y = "def f():\n    y = 2\n    return 1\n"
    only_y = "def f():\n    y = 2\n"
    steps = [Step("v0001", "y", {"m.py": body}, {"m.py": with_y}), Step("v0002", "no return", {"m.py": with_y},
                                                                         {"m.py": only_y})]
    cands = {(c.change, c.kind): c for c in build_candidates({"m.py": body}, {"m.py": only_y}, decompose(steps).changes)}
    assert cands[("v0001", LEAVE_ONE_OUT)].skipped.startswith("m.py does not compile")
