"""Targets: the registry, the C emitter, builds and runs (host and emulators)."""
