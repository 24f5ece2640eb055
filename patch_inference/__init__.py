"""Memory planning: tensor lifetimes and arena offsets (patch-based schedules build on this)."""
