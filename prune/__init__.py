"""prune stage (see DESIGN.md)."""
