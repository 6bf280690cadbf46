"""``mer serve``: serve a trained or registered model over HTTP on the KServe model server."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    from mer_lib.serving.instances import Limits  # lazy: `mer` imports every command module to build its parser

    d = Limits()
    p = sub.add_parser("serve", help="serve a model online (KServe v1 and v2 protocols)",
                       description="Serve a model on the KServe model server: POST "
                                   "/v1/models/NAME:predict with {\"instances\": [{\"a\": [[...]], \"l\": ...}]}. "
                                   "Needs the `serving` extra (pip install 'mer-lib[serving]').")
    p.add_argument("--model", required=True,
                   help="run directory of `mer train`, a checkpoint, or a registry model <registry>/<name> "
                        "(local or gs://), as for `mer predict`")
    p.add_argument("--version", help="registry version: champion (default), latest or a number")
    p.add_argument("--fold", default="ensemble", help="fold number, or 'ensemble' to average every fold")
    p.add_argument("--name", default="mer", help="model name in the endpoint paths")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port")
    p.add_argument("--grpc-port", type=int, default=0,
                   help="gRPC (Open Inference Protocol) port, on every address (kserve ignores --host); 0 = no gRPC")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the model runs")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = one per core of the machine; in a pod use its CPU limit)")
    p.add_argument("--absent", default="auto", choices=["auto", "zeros", "noise"],
                   help="absent modalities: auto = as trained (zeros; NMER: its noise recipe)")
    p.add_argument("--max-request-bytes", type=int, default=d.max_request_bytes, help="largest request body")
    p.add_argument("--max-instances", type=int, default=d.max_instances, help="most instances per request")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="most frames per feature sequence")
    p.add_argument("--max-audio-seconds", type=float, default=d.max_audio_seconds,
                   help="longest decoded audio clip")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted."""
    from mer_lib.serving.instances import Limits  # lazy: `mer` imports every command module to build its parser

    limits = Limits(max_request_bytes=args.max_request_bytes, max_instances=args.max_instances,
                    max_frames=args.max_frames, max_audio_seconds=args.max_audio_seconds)
    try:
        from mer_lib.serving.server import serve  # lazy: `mer` imports every command module to build its parser
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("kserve", "orjson"):
            raise OSError(f"mer serve needs the `serving` extra: pip install 'mer-lib[serving]' ({exc})") from exc
        raise
    serve(args.model, version=args.version, fold=args.fold, name=args.name, host=args.host, port=args.port,
          grpc_port=args.grpc_port, device=args.device, absent=args.absent, limits=limits, threads=args.threads)
    return 0
