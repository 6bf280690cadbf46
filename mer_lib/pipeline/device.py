"""GPU steps must use a GPU: fail at once, naming node and image, when a ``cuda`` step sees none.

On a cluster a training pod that asked for a GPU but cannot use it (a CPU image, a node without
the driver, a request the backend dropped) would otherwise either crash deep inside training or,
with ``device=auto``, train on the CPU while holding a GPU node. The pipeline's GPU steps therefore
run with ``device=cuda`` and call :func:`require_device` first; ``auto`` stays for local runs.
"""

from __future__ import annotations

import os
import socket

#: Environment variables the pipeline sets on GPU pods (see ``pipelines/training.py``).
NODE_ENV = "NODE_NAME"
IMAGE_ENV = "MER_IMAGE"


class NoGpuError(RuntimeError):
    """A step that must run on a GPU sees none."""


def require_device(device: str) -> None:
    """Raise :class:`NoGpuError` when ``device`` is ``cuda`` (or ``cuda:N``) and torch sees no GPU.

    The message names the Kubernetes node (``$NODE_NAME``, set from ``spec.nodeName``; else the host
    name), the image (``$MER_IMAGE``), torch's CUDA build and what the container was given, so the
    cause (wrong image, wrong pool, missing driver) can be read from the failed step's log.
    """
    if not device.startswith("cuda"):
        return
    import torch  # heavy: only GPU steps pay for it here

    if torch.cuda.is_available():
        return
    node = os.environ.get(NODE_ENV) or f"{socket.gethostname()} (host name; {NODE_ENV} unset)"
    image = os.environ.get(IMAGE_ENV) or "unknown (MER_IMAGE unset)"
    build = torch.version.cuda or "none: a CPU-only build of torch, i.e. not the CUDA image"
    given = ", ".join(f"{k}={os.environ[k]}" for k in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
                      if k in os.environ) or "no NVIDIA_VISIBLE_DEVICES/CUDA_VISIBLE_DEVICES"
    raise NoGpuError(
        f"device={device} but no GPU is visible on node {node} in image {image}: torch {torch.__version__} "
        f"(CUDA build {build}), {given}. Check that the pod was given a GPU (accelerator_type/accelerator_count, "
        f"the GPU node pool of gpu_node_selector), that the node has the NVIDIA driver, and that the step runs "
        f"the CUDA image (MER_IMAGE_GPU at compile time). Use device=auto only for local runs.")
