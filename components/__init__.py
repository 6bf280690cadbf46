"""Thin KFP components: each one moves artifacts in and out and calls one ``mer_lib`` function.

Every component is a lightweight Python component whose image has ``mer_lib`` and the same kfp
version installed (``install_kfp_package=False``: no pip in pods). Imports of ``mer_lib`` stay
inside the function bodies because KFP ships only the function source.

Two images, chosen per step at compile time and baked into the package (``images/README.md``):

- :data:`MER_IMAGE_CPU` (``$MER_IMAGE_CPU``): the base image of every component, the small CPU build;
- :data:`MER_IMAGE_GPU` (``$MER_IMAGE_GPU``): the CUDA build, set by ``pipelines/training.py`` on the
  GPU training steps and by ``pipelines/batch_predict.py`` on its GPU prediction step.

``$MER_IMAGE`` alone sets both (one image for every step, as before). Use tags while developing and
pin digests for the scheduled production pipeline, e.g.::

    MER_IMAGE_CPU=europe-docker.pkg.dev/PROJECT/mer/mer@sha256:<digest> \\
    MER_IMAGE_GPU=europe-docker.pkg.dev/PROJECT/mer/mer-cuda@sha256:<digest> python pipelines/compile.py
"""

from __future__ import annotations

import os

#: Default images (tags); production pins ``...@sha256:<digest>`` through the environment.
DEFAULT_IMAGE_CPU = "ghcr.io/mer-project/mer:0.1.0"
DEFAULT_IMAGE_GPU = "ghcr.io/mer-project/mer-cuda:0.1.0"


def _image(variable: str, default: str) -> str:
    return os.environ.get(variable, "").strip() or os.environ.get("MER_IMAGE", "").strip() or default


MER_IMAGE_CPU: str = _image("MER_IMAGE_CPU", DEFAULT_IMAGE_CPU)
MER_IMAGE_GPU: str = _image("MER_IMAGE_GPU", DEFAULT_IMAGE_GPU)
#: The base image of every component (the CPU one); GPU steps switch to :data:`MER_IMAGE_GPU`.
MER_IMAGE: str = MER_IMAGE_CPU
