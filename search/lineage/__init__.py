"""The lineage: variants as git commits and tags (`repo`), and a variant materialised as a
directory from this checkout, a directory or a commit (`checkout`). The only code importing `git`.

May import: the standard library, `git`, `search` (its `PROJECT_ROOT`), `search.record.format`.
Nothing else of `search`.
"""
