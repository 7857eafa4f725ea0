"""Reports and export, built from the record alone: the lineage report page (`lineage`), its
plots (`plots`, matplotlib with the Agg backend) and the exported variant directory (`export`,
with `templates/train_variant.py`).

May import: `search.record`, `search.lineage`, `search.config`. Never trains, never asks the LLM.
"""
