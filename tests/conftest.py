"""Shared fixtures come from the public h5live.testing pytest plugin."""

pytest_plugins = ["h5live.testing.pytest_plugin"]
