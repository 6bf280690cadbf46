"""Thin KFP components: each one moves artifacts in and out and calls one ``mer_lib`` function.

Every component is a lightweight Python component on one image, :data:`MER_IMAGE`, which has
``mer_lib`` and the same kfp version installed (``install_kfp_package=False``: no pip in pods).
Imports of ``mer_lib`` stay inside the function bodies because KFP ships only the function source.

The image is read from the ``MER_IMAGE`` environment variable when this package is imported, i.e.
at compile time, and baked into the package. Use a tag for development and pin a digest for the
scheduled production pipeline, e.g.::

    MER_IMAGE=europe-docker.pkg.dev/PROJECT/mer/mer-cuda@sha256:<digest> python pipelines/compile.py
"""

from __future__ import annotations

import os

#: Default image (a tag); production pins ``...@sha256:<digest>`` through ``MER_IMAGE``.
DEFAULT_IMAGE = "ghcr.io/mer-project/mer:0.1.0"
MER_IMAGE: str = os.environ.get("MER_IMAGE", "").strip() or DEFAULT_IMAGE
