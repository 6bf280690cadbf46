"""The model families the pipeline trains, evaluates, compares and may register: one registry.

A family is one or more training stages, each stage's run being the next stage's teacher. The
training fan-out, the evaluations, the comparison and the registration branches of
``pipelines/training.py`` all derive from :data:`FAMILIES`. The compare component still names one
typed input per family (:func:`evaluation_input`): KFP 2.17 passes a list of artifacts only from a
``dsl.Collected`` loop, not from separate tasks. ``tests/test_compile.py`` fails when the registry
and that signature disagree.

Nothing heavy is imported here: the pipeline definition reads this module at compile time.
"""

from __future__ import annotations

#: Family -> its training stages in order; each stage's run is the next stage's teacher.
FAMILIES: dict[str, tuple[str, ...]] = {
    "ifmmin": ("utt_shared", "ifmmin"),
    "nmer": ("nmer_pretrain", "nmer"),
    "baseline": ("utt_fusion",),
    "baseline_dropout": ("utt_fusion_dropout",),
}
#: Families trained as baselines: compared, gated on, never registered.
BASELINE_FAMILIES: tuple[str, ...] = ("baseline", "baseline_dropout")
#: Families that may be registered: every family that is not a baseline, in registry order.
CANDIDATE_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in BASELINE_FAMILIES)


def evaluation_input(family: str) -> str:
    """The compare component's input that receives ``family``'s evaluation directory."""
    return f"{family}_eval"
