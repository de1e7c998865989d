"""Write: the one live write path and what is built on it.

Private; the public names are in ``h5live``. Modules: ``sink`` (DatasetSink: one dataset's
chunks), ``loop`` (LiveWrite: the one loop), ``output`` (bookkeeping), ``destination``
(creating and reopening outputs), ``passthrough`` (raw and direct chunk writes), ``encode``
(ChunkEncoder: chunks encoded as HDF5's filters would), ``parallel`` (ParallelChunkWriter: the
pool of encoding threads), ``plugin_codecs`` (hdf5plugin's compression libraries), ``stop``
(stop requests), ``hdmf_private`` (every hdmf private name), ``live_io`` and ``live_nwb``
(LiveHDF5IO, LiveNWBHDF5IO), ``options`` (ConversionOptions), ``conversion`` (what copies and
NWB conversions share), ``copy`` (copy_live), ``nwb`` (to_nwb).
"""
