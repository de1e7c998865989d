"""Iterate: LiveDataChunkIterator, hdmf's GenericDataChunkIterator over a live source.

Private; the public names are in ``h5live``. Modules: ``iterator`` (the hdmf adapter: waiting,
reading, lazy SourceChunks, pickling, progress), ``schedule`` (the pure release schedule:
buffers, the latency bound), ``shapes`` (the pure choice of chunk and buffer shapes).
"""
