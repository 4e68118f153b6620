def register(sub):  # placeholder until report lands
    """Add nothing yet."""
