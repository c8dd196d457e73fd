"""The built-in backend plugins, one small module per framework, installed as ``harness_backends``
(``package-dir`` in pyproject.toml: the folder stays at the top of the repository, and no
top-level ``backends`` package lands in site-packages to collide with another distribution's).

Rules (after einops' ``_backends.py``): a module here imports its framework
only when the backend is first used, never at import time, so a missing or
broken framework makes that one backend unavailable and leaves the others
alone. Each module is loaded through the ``harness`` entry-point group, the
same path a third-party plugin takes. Anything two backends share lives in
``harness/``, not here.
"""
