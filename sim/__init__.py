"""The simulator: a virtual custody centre that drives the real programs without hardware."""
