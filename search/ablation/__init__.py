"""The ablation report, the one report that trains: the plan (`plan`, pure: a lineage cut into
changes, leave-one-out and add-one files), the effects (`effects`, pure: paired deltas), the run
(`run`: commits and queues the candidates in the run's study and trains them with the search's
trial executor) and the files (`report`).

May import: `search.record`, `search.lineage`, `search.run`, `search.report.plots`.
"""
