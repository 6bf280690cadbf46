"""Read the IEMOCAP release as distributed (``IEMOCAP_full_release/Session1..5/...``).

Labels come from ``dialog/EmoEvaluation/<dialog>.txt``, text from ``dialog/transcriptions`` (or the
words of ``sentences/ForcedAlignment/<dialog>/<id>.wdseg``), audio from ``sentences/wav`` and video
from the dialog-level ``dialog/avi/DivX/<dialog>.avi`` cut to the EmoEvaluation time window and to
the speaker's half of the picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mer_lib import storage
from mer_lib.data.featureset import FeatureSetError, parse_iemocap_id
from mer_lib.features.records import IEMOCAP_CODES, LabelSet, Listing, Skip, Utterance

EMO_LINE = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t\[")
TRANS_LINE = re.compile(r"^(\S+)\s+\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]:\s?(.*)$")
WDSEG_SKIP = {"<s>", "</s>", "<sil>"}
SIDE_MODES = ("gender", "marker", "left", "right", "full")


@dataclass(frozen=True)
class SideRule:
    """Which half of the dialog video shows the speaker.

    ``gender``: the female actor on ``female_side`` and the male on the other half; ``marker``: the
    actor wearing the face markers (the F/M after ``Ses0N`` in the dialog id) on ``marker_side``;
    ``left``/``right``/``full``: the same crop for everyone.  No official face box exists, so check
    this against a few frames of your copy.
    """

    mode: str = "gender"
    female_side: str = "left"
    marker_side: str = "left"

    def __post_init__(self) -> None:
        if self.mode not in SIDE_MODES:
            raise ValueError(f"video side mode {self.mode!r} is not one of {SIDE_MODES}")
        for s in (self.female_side, self.marker_side):
            if s not in ("left", "right"):
                raise ValueError(f"video side {s!r} must be 'left' or 'right'")

    def side(self, uid: str) -> str:
        """Crop for utterance ``uid``."""
        if self.mode in ("left", "right", "full"):
            return self.mode
        other = {"left": "right", "right": "left"}
        speaker, marker = uid.rsplit("_", 1)[1][0], uid[5]
        if self.mode == "gender":
            return self.female_side if speaker == "F" else other[self.female_side]
        return self.marker_side if speaker == marker else other[self.marker_side]

    def to_dict(self) -> dict:
        """JSON form."""
        return {"mode": self.mode, "female_side": self.female_side, "marker_side": self.marker_side}


def parse_emo_evaluation(text: str) -> list[tuple[str, str, float, float]]:
    """``(id, code, start, end)`` for every turn header line of an EmoEvaluation file."""
    out = []
    for line in text.splitlines():
        m = EMO_LINE.match(line)
        if m:
            out.append((m.group(3), m.group(4), float(m.group(1)), float(m.group(2))))
    return out


def parse_transcription(text: str) -> dict[str, str]:
    """id -> text of a dialog transcription file (lines without a time stamp are ignored)."""
    out = {}
    for line in text.splitlines():
        m = TRANS_LINE.match(line.strip("\r"))
        if m:
            out[m.group(1)] = m.group(4).strip()
    return out


def parse_wdseg(text: str) -> list[tuple[float, float, str]]:
    """Words of a ForcedAlignment file as ``(start_s, end_s, word)``; silences and ``(2)`` variants removed."""
    words = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        word = re.sub(r"\(\d+\)$", "", parts[3])
        if word in WDSEG_SKIP:
            continue
        words.append((int(parts[0]) / 100.0, (int(parts[1]) + 1) / 100.0, word))
    return words


def _read(uri: str) -> str:
    # The release's text files are latin-1 safe; utf-8 would fail on a few bytes.
    return storage.read_bytes(uri).decode("latin-1")


def read_iemocap(root: str, labels: LabelSet, *, modalities: str = "avl", sessions: tuple[int, ...] = (1, 2, 3, 4, 5),
                 side: SideRule = SideRule(), text_source: str = "transcript") -> Listing:
    """List the labelled utterances of an IEMOCAP release.

    Args:
        root: the release folder (local path or ``gs://`` URI) holding ``Session1`` ...
        labels: label set; codes outside it are reported as ``excluded``.
        modalities: the modalities to be extracted (missing media only matters for these).
        sessions: sessions to read.
        side: crop rule for the dialog videos.
        text_source: ``transcript`` (dialog transcriptions) or ``alignment`` (ForcedAlignment words, as MMIN).

    Raises:
        FeatureSetError: the folder does not look like the release (no EmoEvaluation files).
    """
    if text_source not in ("transcript", "alignment"):
        raise ValueError(f"text source {text_source!r} must be 'transcript' or 'alignment'")
    files = set(storage.list_files(root))
    utts: list[Utterance] = []
    skips: list[Skip] = []
    n_label_files = 0
    for s in sessions:
        emo_dir = f"Session{s}/dialog/EmoEvaluation/"
        emo_files = sorted(f for f in files if f.startswith(emo_dir) and f.endswith(".txt")
                           and "/" not in f[len(emo_dir):] and not f.rsplit("/", 1)[1].startswith("."))
        for ef in emo_files:
            n_label_files += 1
            dialog = ef.rsplit("/", 1)[1][:-4]
            tfile = f"Session{s}/dialog/transcriptions/{dialog}.txt"
            texts = parse_transcription(_read(storage.join(root, tfile))) if tfile in files else {}
            for uid, code, start, end in parse_emo_evaluation(_read(storage.join(root, ef))):
                utt, problems = _utterance(root, files, s, dialog, uid, code, start, end, labels, texts,
                                           modalities, side, text_source)
                skips.extend(problems)
                if utt is not None:
                    utts.append(utt)
    if n_label_files == 0:
        raise FeatureSetError(f"{root}: no Session*/dialog/EmoEvaluation/*.txt files; is this the IEMOCAP "
                              "release folder (IEMOCAP_full_release)?")
    utts.sort(key=lambda u: u.uid)
    return Listing(utts, skips, labels, {"type": "iemocap", "input": str(root), "sessions": list(sessions),
                                         "side": side.to_dict(), "text_source": text_source})


def _utterance(root: str, files: set[str], s: int, dialog: str, uid: str, code: str, start: float, end: float,
               labels: LabelSet, texts: dict[str, str], modalities: str, side: SideRule,
               text_source: str) -> tuple[Utterance | None, list[Skip]]:
    try:
        session, speaker, gender = parse_iemocap_id(uid)
    except FeatureSetError as exc:
        return None, [Skip(uid, "all", str(exc))]
    if code not in IEMOCAP_CODES:
        return None, [Skip(uid, "label", f"unknown label code {code!r} (known: {', '.join(IEMOCAP_CODES)})")]
    if code not in labels.codes:
        return None, [Skip(uid, "label", f"label code {code!r} is outside the label set", "excluded")]
    problems = []
    wav = f"Session{s}/sentences/wav/{dialog}/{uid}.wav"
    avi = f"Session{s}/dialog/avi/DivX/{dialog}.avi"
    wdseg = f"Session{s}/sentences/ForcedAlignment/{dialog}/{uid}.wdseg"
    if "a" in modalities and wav not in files:
        problems.append(Skip(uid, "a", f"missing media: {wav}"))
    if "v" in modalities and avi not in files:
        problems.append(Skip(uid, "v", f"missing media: {avi}"))
    text = None
    if "l" in modalities:
        if text_source == "alignment":
            if wdseg not in files:
                problems.append(Skip(uid, "l", f"missing media: {wdseg}"))
            else:
                text = " ".join(w for _, _, w in parse_wdseg(_read(storage.join(root, wdseg))))
        elif uid not in texts:
            problems.append(Skip(uid, "l", f"no transcript line in Session{s}/dialog/transcriptions/{dialog}.txt"))
        else:
            text = texts[uid]
    if problems:
        return None, problems
    return Utterance(uid=uid, speaker=speaker, session=str(session), gender=gender, label=labels.codes[code],
                     label_code=code, audio=storage.join(root, wav), video=storage.join(root, avi), text=text,
                     start=start, end=end, side=side.side(uid)), []
