"""The fixed evaluation harness: the data pipeline (`eval/data/`), the trial entry point
(`eval.trial`), its context and clock, memory measurement, the causality probe, the metric, the
record and the confinement of variant code. Never changed by a variant; never imports `search`.
"""
