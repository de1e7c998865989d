"""Sphinx configuration of h5live's documentation (``make docs``).

Pages are MyST Markdown; the API reference comes from the numpydoc docstrings (napoleon);
``tutorials/plot_*.py`` become an executed sphinx-gallery, each downloadable as a notebook.
The build needs no network: set ``H5LIVE_DOCS_INTERSPHINX=1`` to link numpy, h5py, hdmf and
pynwb names to their own documentation (fetches their inventories).
"""

from __future__ import annotations

import os

import h5live  # installed into .venv by make docs (editable: this checkout's)

project = "h5live"
author = "h5live developers"
copyright = "h5live developers"
version = release = h5live.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
if os.environ.get("H5LIVE_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "h5py": ("https://docs.h5py.org/en/stable", None),
        "hdmf": ("https://hdmf.readthedocs.io/en/stable", None),
        "pynwb": ("https://pynwb.readthedocs.io/en/stable", None),
    }

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials/*.ipynb", "tutorials/*.py", "tutorials/*.md5"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: numpydoc sections through napoleon, signatures with their type hints.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# The tutorials: executed at build time, each a page with its output and plots, and
# downloadable as a Python script and a Jupyter notebook. tests/test_tutorials.py converts
# them with these same settings and executes the notebooks.
sphinx_gallery_conf = {
    "examples_dirs": ["../tutorials"],
    "gallery_dirs": ["tutorials"],
    "filename_pattern": r"/plot_",  # every plot_*.py is executed
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": True,
    "abort_on_example_error": True,  # a broken tutorial fails the build
    "remove_config_comments": True,
    "doc_module": ("h5live",),
    "reference_url": {"h5live": None},
    "matplotlib_animations": False,
    "show_memory": False,
}

html_theme = "sphinx_rtd_theme"
html_title = f"h5live {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_depth": 3}
