"""Command-line programs; the scripts in ``codes/`` are thin wrappers around these."""
