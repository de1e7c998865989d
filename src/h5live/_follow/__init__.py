"""h5live's follow: the frontier of complete frames (private; the public names are in ``h5live``)."""
