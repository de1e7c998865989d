"""Iterate: LiveDataChunkIterator, hdmf's GenericDataChunkIterator over a live source.

Private; the public names are in ``h5live``. Module: ``iterator``.
"""
