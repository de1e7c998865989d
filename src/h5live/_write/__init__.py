"""h5live's write: sinks, the one live write loop, outputs, live IO classes, conversions (private; the public names are in ``h5live``)."""
