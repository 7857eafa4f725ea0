"""The lineage: variants as git commits and tags (`repo`, the only code importing `git`), and a
variant materialised as a directory from a commit or a path (`variants`).

May import: the standard library, `git`, `search.record.format`. Nothing else of `search`.
"""
