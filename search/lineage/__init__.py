"""The lineage: variants as git commits (`repo`), the run's tags and candidate refs and their
exchange with a shared remote (`refs`), the one locked GitPython `Repo` those two share
(`shared_repo`), and a variant materialised as a directory from this checkout, a directory or a
commit (`checkout`). This package is the only code that imports `git`.

May import: the standard library, `git`, `search` (its `PROJECT_ROOT`), `search.record.format`.
Nothing else of `search`.
"""
