"""``mer predict``: run a trained model on a feature set, a media list of raw media or a single clip."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    p = sub.add_parser("predict", help="predict emotions of new utterances with any subset of modalities",
                       description="Predict with a trained model. Raw media go through the extractors and "
                                   "normalisation the model was trained with.")
    p.add_argument("--model", required=True,
                   help="run directory of `mer train`, a checkpoint, or a registry model <registry>/<name>")
    p.add_argument("--version", help="registry version: champion (default), latest or a number")
    p.add_argument("--fold", default="ensemble", help="fold number, or 'ensemble' to average every fold")
    p.add_argument("--input", help="feature-set directory, or media list CSV of raw media (id, audio, video, "
                                   "transcript, optional label/start/end/side; empty cell = absent)")
    p.add_argument("--audio", help="single clip: audio file (or a video with an audio stream)")
    p.add_argument("--video", help="single clip: video file")
    p.add_argument("--text", help="single clip: transcript text (or @file.txt to read it from a file)")
    p.add_argument("--id", dest="clip_id", help="single clip: utterance id (default: the media file name)")
    p.add_argument("--out", required=True, help="predictions .csv or .parquet (local or gs://); the skip list "
                                                "goes next to it as <name>.skipped.csv")
    p.add_argument("--split", help="feature sets: predict one split in stored order, e.g. 1:tst")
    p.add_argument("--conditions", help="also predict every utterance under these modality subsets, "
                                        "e.g. a,v,l,av,al,vl,avl (only drops modalities, never adds)")
    p.add_argument("--absent", default="auto", choices=["auto", "zeros", "noise"],
                   help="absent modalities: auto = as trained (zeros; NMER: its noise recipe)")
    p.add_argument("--batch-size", type=int, help="items per batch (default: the recipe's eval batch size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on for a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict, write the table and the skip list, print a summary."""
    from mer_lib import storage  # lazy: `mer` imports every command module to build its parser
    from mer_lib.prediction import predict, write_result  # lazy: `mer` imports every command module to build its parser
    from mer_lib.prediction.api import output_paths  # lazy: `mer` imports every command module to build its parser
    from mer_lib.prediction.summary import (  # lazy: `mer` imports every command module to build its parser
        render_markdown,
        summarize,
    )

    output_paths(args.out)  # reject a bad --out before loading anything
    text = args.text
    if text is not None and text.startswith("@"):
        text = storage.read_text(text[1:])
    result = predict(args.model, args.input, version=args.version, fold=args.fold, audio=args.audio,
                     video=args.video, text=text, clip_id=args.clip_id, split=args.split,
                     conditions=args.conditions, absent=args.absent, batch_size=args.batch_size,
                     device=args.device, progress=args.progress)
    pred_uri, skip_uri = write_result(result, args.out, overwrite=args.overwrite)
    print(render_markdown(summarize(result.predictions, result.skipped, result.info)), end="")
    print(f"\npredictions: {pred_uri}\nskip list:   {skip_uri} ({result.info['skipped']} skipped)")
    return 0
