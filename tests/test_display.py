"""The live line of a training trial on a terminal (search/run/display.py), and plain lines elsewhere."""

from __future__ import annotations

import io

from search.run.display import ERASE_TO_END, LiveLine
from search.run.loop import say_to


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_become_one_live_line_and_other_output_is_ignored():
    term = Terminal()
    line = LiveLine(term, "v0003", 60.0, run_eta=lambda: 125.0)
    line.write("trial: device cpu, 1.2M parameters\n")
    assert term.getvalue() == ""
    line.write("step 00120 | loss 3.2104 | progress  40.0% | train   24.0s | tok/s 9,800\n")
    line.write("step 00130 | loss 3.1000 | progress  45.0% | train   27.0s | tok/s 9,700\n")
    drawn = term.getvalue().split("\r")[1:]
    assert drawn == [
        "[search] v0003 step 120 | loss 3.2104 | train 24s of 60s (40%) | trial eta 36s | run eta 2m05s" + ERASE_TO_END,
        "[search] v0003 step 130 | loss 3.1000 | train 27s of 60s (45%) | trial eta 33s | run eta 2m05s" + ERASE_TO_END]
    line.close()
    assert term.getvalue().endswith("\r" + ERASE_TO_END) and "\n" not in term.getvalue()


def test_a_line_said_on_a_terminal_erases_the_live_line_first_and_plain_output_stays_plain():
    term, plain = Terminal(), io.StringIO()
    say_to(term)("[search] queued v0004")
    say_to(plain)("[search] queued v0004")
    assert term.getvalue() == "\r" + ERASE_TO_END + "[search] queued v0004\n"
    assert plain.getvalue() == "[search] queued v0004\n"
