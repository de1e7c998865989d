"""Read: complete frames of a live source, by hyperslab or direct chunk.

Private; the public names are in ``h5live``. Modules: ``reader`` (FrameReader), ``direct``
(direct chunk reads), ``codecs`` (decoders), ``filters`` (filter pipelines and H5DataIO
options), ``datasource`` (DataSource), ``chunksource`` (ChunkSource: no keys).
"""
