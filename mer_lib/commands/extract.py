"""``mer extract``: raw media (IEMOCAP release or a media list CSV) -> feature set; ``--merge`` combines shards."""

from __future__ import annotations

import argparse
import json

from mer_lib.media_list import MEDIA_LIST, canonical_source


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``extract`` command."""
    p = sub.add_parser("extract", help="extract features from raw audio, video and text",
                       description="Extract a feature set (or, with --shard, a partial); --merge combines partials.")
    # canonical_source: "manifest", the media list's old name, is still accepted.
    p.add_argument("--source", type=canonical_source, choices=["iemocap", MEDIA_LIST],
                   help="input kind: an IEMOCAP release folder or a media list CSV of your own recordings")
    p.add_argument("--input", help="IEMOCAP release folder or media list CSV (path or gs:// URI)")
    p.add_argument("--out", required=True, help="output feature-set folder (or shard partial) path or gs:// URI")
    p.add_argument("--modalities", default="a,v,l", help="comma-separated subset of a,v,l (default: a,v,l)")
    p.add_argument("--acoustic", default="logmel", choices=["compare", "logmel"],
                   help="compare = openSMILE ComParE_2016 130-d (paper; non-commercial licence); "
                        "logmel = permissive log-mel/MFCC/energy/pitch (default)")
    p.add_argument("--lexical", default="minilm", help="minilm (bundled, offline) or a transformers model name/path")
    p.add_argument("--lexical-unit", default="token", choices=["token", "word"], help="one row per token or per word")
    p.add_argument("--visual", default="landmarks", choices=["landmarks", "landmarks+descriptor"])
    p.add_argument("--fps", type=float, default=10.0, help="video frames sampled per second (default 10)")
    p.add_argument("--face-upsample", type=int, default=1, help="dlib HOG upsampling (0 = faster, faces >= 80 px)")
    p.add_argument("--no-face", default="zero", choices=["zero", "drop"],
                   help="frames without a face: zero row (keeps the time axis) or dropped")
    p.add_argument("--downsample", type=int, default=10, help="acoustic 10 ms frames per output frame (default 10)")
    p.add_argument("--labels", default="4class", help="label set: 4class (hap+exc merged), 4class_no_exc, 6class")
    p.add_argument("--video-side", default="gender", choices=["gender", "marker", "left", "right", "full"],
                   help="IEMOCAP: which half of the dialog video shows the speaker")
    p.add_argument("--female-side", default="left", choices=["left", "right"], help="with --video-side gender")
    p.add_argument("--marker-side", default="left", choices=["left", "right"], help="with --video-side marker")
    p.add_argument("--text-source", default="transcript", choices=["transcript", "alignment"],
                   help="IEMOCAP text: transcriptions, or ForcedAlignment words (MMIN)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--shard", help="i/n: extract shard i of n (0-based) into a partial at --out")
    p.add_argument("--work-dir", help="resumable per-utterance cache (default: under MER_CACHE_DIR)")
    p.add_argument("--max-skip-fraction", type=float, default=0.05,
                   help="fail when more than this fraction of utterances has bad input (default 0.05)")
    p.add_argument("--merge", nargs="+", metavar="PARTIAL", help="merge these shard partials into --out")
    p.add_argument("--allow-missing-shards", action="store_true", help="with --merge: accept an incomplete set")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the extraction or the merge and print a one-line JSON summary."""
    from mer_lib.features.api import extract, merge  # lazy: `mer` imports every command module to build its parser
    from mer_lib.features.extractors import ExtractorChoice  # lazy: as above
    from mer_lib.features.iemocap import SideRule  # lazy: `mer` imports every command module to build its parser

    if args.merge:
        meta = merge(args.merge, args.out, max_skip_fraction=args.max_skip_fraction, overwrite=args.overwrite,
                     allow_missing_shards=args.allow_missing_shards)
        print(json.dumps({"out": args.out, "counts": meta["counts"], "spec": meta["spec"]}))
        return 0
    if not args.source or not args.input:
        raise ValueError("--source and --input are required (unless --merge is given)")
    choice = ExtractorChoice(acoustic=args.acoustic, lexical=args.lexical, visual=args.visual, fps=args.fps,
                             upsample=args.face_upsample, no_face=args.no_face, downsample=args.downsample,
                             lexical_unit=args.lexical_unit)
    side = SideRule(args.video_side, args.female_side, args.marker_side)
    summary = extract(args.source, args.input, args.out, modalities=args.modalities, choice=choice,
                      labels=args.labels, side=side, text_source=args.text_source, workers=args.workers,
                      shard=args.shard, work_dir=args.work_dir, max_skip_fraction=args.max_skip_fraction,
                      overwrite=args.overwrite)
    meta = summary.get("metadata") or summary["partial"]
    print(json.dumps({k: summary[k] for k in ("out", "extracted", "cached", "work_dir")} | {"counts": meta["counts"]}))
    return 0
