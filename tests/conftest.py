"""Shared fixtures come from the public h5live.testing pytest plugin; pytester tests the
fixtures themselves."""

pytest_plugins = ["h5live.testing.pytest_plugin", "pytester"]
