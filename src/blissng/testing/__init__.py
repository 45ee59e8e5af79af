"""pytest fixtures for blissng users and its own tests; see blissng.testing.plugin."""
