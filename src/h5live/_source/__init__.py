"""h5live's source: open, retry, layouts, one handle per dataset (private; the public names are in ``h5live``)."""
