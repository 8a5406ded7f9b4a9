"""Property-based tests (hypothesis) of the losses, metrics and fusion tables."""
