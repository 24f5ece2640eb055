"""The driver: the CLI, the convert pipeline, the manifest, reports, verify and bench. It imports
every stage and nothing imports it (tests/toolchain/test_layers.py)."""
