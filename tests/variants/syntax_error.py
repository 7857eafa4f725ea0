"""Does not parse."""
def train(ctx)
    return None
