"""Comparison of the evaluated models, and the champion/challenger decision that gates registration.

KFP needs one typed input per family (it passes a list of artifacts only from a ``dsl.Collected``
loop), so the signature names ``<family>_eval`` for every family of
:data:`mer_lib.pipeline.families.FAMILIES`; the body derives everything else from that registry,
and ``tests/test_compile.py`` fails when the two disagree.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def compare_models(ifmmin_eval: Input[Artifact], nmer_eval: Input[Artifact], baseline_eval: Input[Artifact],
                   baseline_dropout_eval: Input[Artifact],
                   registry_uri: str, model_name: str, promotion_margin: float, require_beat_baseline: bool,
                   comparison: Output[Artifact],
                   report_md: Output[Markdown], report_html: Output[HTML]) -> str:
    """Put the models side by side and decide whether the best robust model should be registered.

    Args:
        ifmmin_eval: IF-MMIN evaluation directory.
        nmer_eval: NMER evaluation directory.
        baseline_eval: zero-filled baseline evaluation directory (utt_fusion trained on full modality).
        baseline_dropout_eval: modality-dropout baseline evaluation directory (utt_fusion_dropout). Baselines are
            never registered; the stronger of the two gates the promotion.
        registry_uri: registry root; empty = a fresh registry (no champion).
        model_name: registry name.
        promotion_margin: the challenger must beat the champion's primary metric by more than this.
        require_beat_baseline: it must also beat the best baseline of this run by more than the margin.
        comparison: the comparison directory (tables, ``metrics.json``, ``decision.json``, reports).
        report_md: the Markdown comparison report.
        report_html: the HTML comparison report.

    Returns:
        The family to register (``ifmmin`` or ``nmer``), or ``""`` when the champion stays. One output, so the
        pipeline's ``dsl.If`` works in the local runner too; the reason is in ``comparison``.
    """
    # The parameters by name, taken before anything else is bound: each family's input is found
    # through the one family registry, so this body names no family.
    inputs = locals()
    import shutil

    from mer_lib.pipeline.compare import compare_families
    from mer_lib.pipeline.families import FAMILIES, evaluation_input

    doc, decision = compare_families({f: inputs[evaluation_input(f)].path for f in FAMILIES}, comparison.path,
                                     registry_uri=registry_uri, model_name=model_name, margin=promotion_margin,
                                     require_beat_baseline=require_beat_baseline)
    shutil.copyfile(f"{comparison.path}/report.md", report_md.path)
    shutil.copyfile(f"{comparison.path}/report.html", report_html.path)
    comparison.metadata.update({"ranking": doc["ranking"], "primary_metric": doc["primary_metric"],
                                **{f"{m}_primary": doc["models"][m]["primary"] for m in doc["ranking"]},
                                **decision.to_dict()})
    print(("REGISTER: " if decision.register else "KEEP CHAMPION: ") + decision.reason)
    return decision.challenger if decision.register else ""
