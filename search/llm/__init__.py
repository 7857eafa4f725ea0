"""The LLM: the client (`client`, the only code importing `openai`) with its spending ledger, the
reading of answers into edits (`answers`: SEARCH/REPLACE blocks, whole files, the description),
their application to a variant's files (`patch`), and the prompts built from the templates in
`templates/` (`prompts`).

May import: the standard library, `openai` (client only), `eval.files` (atomic writes),
`search.record.format`. The answer,
patch and prompt modules are pure: values in, values out.
"""
