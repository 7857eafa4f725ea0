"""The record of a run: the trial attributes and statuses, reading a run back (`runs`: its
config, its study opened read-only, its lineage), the pure report data built from the trials
(`data`), results rows and the run summary (`summary`), and number formatting (`format`).

The loop decides with the same functions the reports use, so a report shows what the run saw.
May import: `search.selection`, `search.config`, `eval.record`; `runs` alone opens the study and
the lineage (through `search.run.scheduler` and `search.lineage`).
"""
