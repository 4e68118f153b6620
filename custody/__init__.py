"""custody-edge: the `custody` command and the pieces every program shares (broker harness)."""
