"""h5live's read: complete frames, by hyperslab or direct chunk (private; the public names are in ``h5live``)."""
