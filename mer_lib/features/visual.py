"""Visual extractor: dlib HOG face detection, 68-point landmark geometry, optional 128-d descriptor.

Per sampled frame the largest detected face gives 136 numbers: the 68 landmarks centred on their
mean, rotated so the eye line is horizontal and scaled by the inter-ocular distance (expression
without head position, roll or size).  ``descriptor=True`` appends dlib's 128-d face embedding
(identity-heavy; weaker for emotion).  A frame without a face is never invented: its row is zero
(``no_face="zero"``, keeps the 10 fps time axis) or dropped (``"drop"``, as MMIN kept only detected
face frames), and a per-frame flag says which rows hold a face.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NO_FACE_POLICIES = ("zero", "drop")
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class NoFaceError(ValueError):
    """No frame of the clip holds a detectable face."""


def dlib_models_dir() -> Path:
    """``face_recognition_models``' weight folder, located WITHOUT importing the package.

    Its ``__init__`` imports ``pkg_resources``, which setuptools >= 81 removed, so importing it crashes.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'landmarks' visual extractor needs face_recognition_models and dlib-bin: "
                          "pip install 'mer-lib[features]'")
    return Path(spec.submodule_search_locations[0]) / "models"


def normalise_landmarks(points: np.ndarray) -> np.ndarray:
    """``[68, 2]`` pixel landmarks -> 136 numbers invariant to translation, in-plane rotation and scale."""
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    dx, dy = right_eye - left_eye
    iod = float(np.hypot(dx, dy)) or 1.0
    angle = np.arctan2(dy, dx)
    rot = np.array([[np.cos(-angle), -np.sin(-angle)], [np.sin(-angle), np.cos(-angle)]])
    centred = (points - points.mean(0)) @ rot.T / iod
    return centred.reshape(-1).astype(np.float32)


@dataclass
class LandmarkExtractor:
    """Face landmarks (136) [+ descriptor (128)] per frame sampled at ``fps``.

    Args:
        fps: frames per second sampled from the video (MMIN's face frames: 10 fps).
        descriptor: append the 128-d dlib face descriptor.
        upsample: HOG detector upsampling (1 finds faces down to ~40 px; 0 is 4x faster, >= 80 px).
        no_face: ``zero`` keeps a zero row for frames without a face, ``drop`` removes them.
    """

    fps: float = 10.0
    descriptor: bool = False
    upsample: int = 1
    no_face: str = "zero"
    _detector: object = field(default=None, init=False, repr=False)
    _shape: object = field(default=None, init=False, repr=False)
    _facerec: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.no_face not in NO_FACE_POLICIES:
            raise ValueError(f"no_face policy {self.no_face!r} is not one of {NO_FACE_POLICIES}")
        self.name: str = "landmarks_descriptor" if self.descriptor else "landmarks"
        self.dim: int = 136 + (128 if self.descriptor else 0)

    def _load(self) -> None:
        # The 100 MB landmark model loads on first use, not when only the settings are needed.
        import dlib  # optional extra "features" (dlib-bin)

        models = dlib_models_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / LANDMARKS_FILE))
        if self.descriptor:
            self._facerec = dlib.face_recognition_model_v1(str(models / DESCRIPTOR_FILE))

    def frame(self, image: np.ndarray) -> np.ndarray | None:
        """Features of one RGB frame, or None when no face is found."""
        if self._detector is None:
            self._load()
        faces = self._detector(image, self.upsample)
        if len(faces) == 0:
            return None
        box = max(faces, key=lambda r: r.width() * r.height())  # the speaker, not a background face
        shape = self._shape(image, box)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        feats = [normalise_landmarks(pts)]
        if self.descriptor:
            feats.append(np.asarray(self._facerec.compute_face_descriptor(image, shape), dtype=np.float32))
        return np.concatenate(feats)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``[T, dim]`` and face flags ``[T]`` (bool, per output row's source frame).

        Raises:
            NoFaceError: no frame holds a detectable face.
        """
        rows = [self.frame(np.ascontiguousarray(im)) for im in images]
        flags = np.array([r is not None for r in rows], dtype=bool)
        if not flags.any():
            raise NoFaceError(f"video without a detectable face ({len(rows)} frames sampled at {self.fps} fps)")
        zero = np.zeros(self.dim, np.float32)
        feats = np.stack([r if r is not None else zero for r in rows]).astype(np.float32)
        if self.no_face == "drop":
            return feats[flags], flags
        return feats, flags

    def settings(self) -> dict:
        """Everything needed to rebuild this extractor."""
        return {"name": self.name, "detector": "dlib_hog", "landmarks": 68, "descriptor": self.descriptor,
                "fps": self.fps, "upsample": self.upsample, "no_face": self.no_face, "dim": self.dim}
