"""Sphinx configuration: MyST Markdown pages, the API reference from docstrings (autodoc with
napoleon), the CLI reference from the argparse parser itself (sphinx-argparse).

Built offline and strictly by ``tox run -e docs`` (``sphinx-build -W --keep-going``): a broken
link between pages, a missing reference or a docstring that does not parse fails the build.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the source tree, as the tests import it

project = "gradient-harness"
author = "the gradient-harness authors"
copyright = "2026, the gradient-harness authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links to a page's sections: page.md#a-heading
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.header"]  # CHANGELOG.md, included whole, starts at its own level

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "gradient-harness"
html_static_path: list[str] = []
