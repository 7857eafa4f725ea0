"""evoresearch: population search over small-GPT training code (`python -m search --help`)."""
