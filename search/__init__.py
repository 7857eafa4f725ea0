"""evoresearch: population search over small-GPT training code (`python -m search --help`)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # this checkout: conf/, the seed, the harness
