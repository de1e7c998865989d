"""h5live's iterate: LiveDataChunkIterator, the hdmf adapter (private; the public names are in ``h5live``)."""
