"""Source: open a live file with retries, find its keys and finished flag in the known layouts,
follow master files' virtual datasets and external links, keep one handle per dataset.

Private; the public names are in ``h5live``. Modules: ``spec`` (SourceSpec, open_source),
``handles``, ``recover`` (writer flags, truncated files), ``virtual``.
"""
