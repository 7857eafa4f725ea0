"""The LLM: the client (the only code importing `openai`) with its spending ledger, the parsing
and application of answers (SEARCH/REPLACE blocks, whole files), and the prompts built from the
templates in `templates/`.

May import: the standard library, `openai` (client only), `search.record.format`. The answer and
prompt modules are pure: values in, values out.
"""
