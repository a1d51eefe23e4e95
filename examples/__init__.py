"""Example applications built on Shoal (run from the repository root)."""
