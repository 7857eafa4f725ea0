"""Imports a module that does not exist."""
import torch_extensions_that_do_not_exist  # noqa: F401


def train(ctx):
    return None
