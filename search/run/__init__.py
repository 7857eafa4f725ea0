"""The run: the wiring of a search's threads and everything that executes trials.

Owns: the producer (candidates into the queue), the trial executor (preflight, trial, verdict,
record), the run's store (the one facade over the study and the lineage, which owns their locks),
the worker loop and its liveness (heartbeats, reaping dead workers), the scheduler (the only code
importing `optuna`), the runner (the only code starting trial processes) and its sandbox, the
remote-worker command and the failpoints of the crash tests.

May import: `search.config`, `search.lineage`, `search.operators`, `search.llm`, `search.selection`,
`search.record` and `eval` (the harness's record, data preparation and file helpers).
"""
