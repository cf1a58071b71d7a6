"""Bundled, seeded data for the examples and the demo."""
