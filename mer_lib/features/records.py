"""What a source reader hands to the extraction driver: utterances, skips and the label set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mer_lib.data.featureset import LABEL_NAMES

#: Every categorical code of the IEMOCAP release (EmoEvaluation majority labels).
IEMOCAP_CODES = ("ang", "hap", "sad", "neu", "exc", "fru", "fea", "sur", "dis", "oth", "xxx")


@dataclass(frozen=True)
class LabelSet:
    """Class names and the source label code -> class index mapping (codes outside are excluded)."""

    names: tuple[str, ...]
    codes: dict[str, int]

    def to_dict(self) -> dict:
        """JSON form."""
        return {"names": list(self.names), "codes": dict(self.codes)}


#: ``4class`` is MMIN/IF-MMIN/NMER's: happy+excited merged, 5531 utterances.
LABEL_SETS: dict[str, LabelSet] = {
    "4class": LabelSet(LABEL_NAMES, {"hap": 0, "exc": 0, "ang": 1, "sad": 2, "neu": 3}),
    "4class_no_exc": LabelSet(LABEL_NAMES, {"hap": 0, "ang": 1, "sad": 2, "neu": 3}),
    "6class": LabelSet(("happy", "angry", "sad", "neutral", "excited", "frustrated"),
                       {"hap": 0, "ang": 1, "sad": 2, "neu": 3, "exc": 4, "fru": 5}),
}


def label_set(name: str) -> LabelSet:
    """A predefined label set by name."""
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; choose one of {', '.join(LABEL_SETS)}")
    return LABEL_SETS[name]


@dataclass
class Utterance:
    """One utterance to extract.  Media references are local paths or ``gs://`` URIs; None = absent.

    ``start``/``end`` cut the video (and ``audio_start``/``audio_end`` the audio) when the file
    holds more than the utterance (IEMOCAP's dialog-level videos).
    """

    uid: str
    speaker: str
    session: str
    gender: str
    label: int
    label_code: str
    audio: str | None = None
    video: str | None = None
    text: str | None = None
    start: float | None = None
    end: float | None = None
    audio_start: float | None = None
    audio_end: float | None = None
    side: str = "full"

    def to_dict(self) -> dict:
        """JSON-able form (for the worker processes and the cache)."""
        return asdict(self)


@dataclass(frozen=True)
class Skip:
    """A problem with one utterance: ``category`` is ``skipped`` (bad input, counts towards the
    allowed fraction) or ``excluded`` (deliberately outside the label set)."""

    uid: str
    modality: str
    reason: str
    category: str = "skipped"


@dataclass
class Listing:
    """A source's utterances (sorted by id), the problems found while reading it, and its labels."""

    utterances: list[Utterance]
    skips: list[Skip] = field(default_factory=list)
    labels: LabelSet = field(default_factory=lambda: LABEL_SETS["4class"])
    source: dict = field(default_factory=dict)
