"""``mer serve`` on the KServe model server (the optional ``serving`` extra: ``kserve==0.21.0``).

Endpoints (those of ``kserve.ModelServer``, for the model name given by ``--name``):

- KServe v1: ``GET /v1/models/{name}`` (ready), ``POST /v1/models/{name}:predict`` with
  ``{"instances": [...]}`` (see :mod:`mer_lib.serving.instances`), answered with
  ``{"predictions": [{"label", "probabilities", "modalities"}, ...]}``, one per instance, in order;
- Open Inference Protocol (v2): ``GET /v2/models/{name}`` (metadata), ``/v2/models/{name}/ready``,
  ``POST /v2/models/{name}/infer`` with FP32 inputs ``a``/``v``/``l`` shaped ``[N, T, D]``, answered
  with the outputs ``label`` (BYTES [N]), ``probabilities`` (FP32 [N, C], class names in the
  output's ``labels`` parameter) and ``modalities`` (BYTES [N]); gRPC v2 too with ``--grpc-port``.

The model is loaded once, before the server listens, so readiness means loaded. Bad input is
answered 400 (413 over a size limit) with ``{"error": "<instance and field>: <why>"}`` and never
stops the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from mer_lib.serving.instances import BadInstance, Limits
from mer_lib.serving.predictor import Prediction, Predictor

# kserve.model_server parses sys.argv with its own flags when imported, and argparse's prefix
# matching would read `mer serve --model X` as its --model_name; it must see none of our arguments.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import orjson
    from fastapi.responses import JSONResponse  # kserve's web framework
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
    from kserve.errors import InvalidInput
    from kserve.model_server import app as kserve_app
finally:
    sys.argv = _argv

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: Bodies declared larger than the limit are read and discarded up to this multiple of it (so the
#: client gets its 413 instead of a reset connection), then the connection is closed.
DRAIN_FACTOR = 8


class MerModel(Model):
    """The KServe model: a :class:`Predictor` behind the v1 and v2 protocols."""

    def __init__(self, name: str, load: Callable[[], Predictor]) -> None:
        """Set up; nothing is loaded before :meth:`load`.

        Args:
            name: model name in the endpoint paths.
            load: builds the predictor (called once by :meth:`load`).
        """
        super().__init__(name)
        self._load = load
        self.predictor: Predictor | None = None
        # One inference thread: forward passes run one at a time, off the event loop, so health and
        # readiness probes keep answering while a large request computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mer-infer")

    def load(self) -> bool:
        """Load the model; ready only afterwards."""
        self.predictor = self._load()
        self.ready = True
        return self.ready

    def _ready_predictor(self) -> Predictor:
        if self.predictor is None:  # kserve only routes to ready models; a guard for direct calls
            raise RuntimeError(f"model {self.name} is not loaded")
        return self.predictor

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        """v1 ``{"instances": [...]}`` or a v2 :class:`InferRequest` -> predictions.

        Raises:
            InvalidInput: bad input (400, the message names instance and field).
            BadInstance: input over a size limit (413).
        """
        predictor = self._ready_predictor()
        loop = asyncio.get_running_loop()
        try:
            if isinstance(payload, InferRequest):
                tensors = v2_tensors(payload)
                preds = await loop.run_in_executor(self._executor, predictor.predict_tensors, tensors)
                return self._v2_response(payload, preds)
            if not isinstance(payload, dict) or "instances" not in payload:
                raise BadInstance('request: expected a JSON object {"instances": [...]} (KServe v1 protocol)')
            out = await loop.run_in_executor(self._executor, predictor.predict_instances, payload["instances"])
            return {"predictions": out}
        except BadInstance as exc:
            if exc.status == 400:
                raise InvalidInput(str(exc)) from exc  # kserve's own 400 (REST) / INVALID_ARGUMENT (gRPC)
            raise

    def _v2_response(self, request: InferRequest, preds: list[Prediction]) -> InferResponse:
        names = list(self._ready_predictor().label_names)
        probs = np.array([[p.probabilities[n] for n in names] for p in preds], dtype=np.float32)
        outputs = [
            InferOutput("label", [len(preds)], "BYTES", [p.label for p in preds]),
            InferOutput("probabilities", [len(preds), len(names)], "FP32", probs.reshape(-1).tolist(),
                        parameters={"labels": ",".join(names)}),
            InferOutput("modalities", [len(preds)], "BYTES", [p.modalities for p in preds]),
        ]
        return InferResponse(request.id or str(uuid.uuid4()), self.name, outputs)

    def get_input_types(self) -> list[dict[str, Any]]:
        """v2 metadata: one FP32 ``[N, T, D]`` input per modality."""
        dims = self._ready_predictor().loaded.spec.dims
        return [{"name": m, "datatype": "FP32", "shape": [-1, -1, int(d)]} for m, d in dims.items()]

    def get_output_types(self) -> list[dict[str, Any]]:
        """v2 metadata: label, probabilities (class order in the ``labels`` parameter), modalities."""
        c = len(self._ready_predictor().label_names)
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, c]},
                {"name": "modalities", "datatype": "BYTES", "shape": [-1]}]


def v2_tensors(request: InferRequest) -> dict[str, np.ndarray]:
    """The numeric input tensors of a v2 request, by name.

    Raises:
        BadInstance: a repeated or non-numeric input, or data that do not fill its shape.
    """
    out: dict[str, np.ndarray] = {}
    for inp in request.inputs:
        at = f"inputs.{inp.name}"
        if inp.name in out:
            raise BadInstance(f"{at}: given twice")
        if inp.datatype not in ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"):
            raise BadInstance(f"{at}: datatype {inp.datatype}; expected FP32 features [N, T, D]")
        try:
            out[inp.name] = inp.as_numpy()
        except (ValueError, TypeError, InvalidInput) as exc:
            raise BadInstance(f"{at}: data do not match shape {list(inp.shape)} ({exc})") from exc
    return out


class RequestGuard:
    """ASGI middleware in front of the KServe app: the request size limit, and precise errors for
    NaN/Infinity, which Python clients write into JSON but the server's JSON parser rejects outright."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int,
                 validate: Callable[[Any], None]) -> None:
        """Wrap ``app``.

        Args:
            app: the wrapped ASGI app.
            max_bytes: largest accepted request body.
            validate: checks a decoded v1 request body, raising :class:`BadInstance`.
        """
        self.app, self.max_bytes, self.validate = app, max_bytes, validate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode() or "0"
        too_big = f"request body: %s bytes exceed the limit of {self.max_bytes} (--max-request-bytes)"
        if not declared.isdigit():
            await _answer(send, 400, f"request: bad Content-Length {declared!r}")
            return
        if int(declared) > DRAIN_FACTOR * self.max_bytes:
            await _answer(send, 413, too_big % declared, close=True)
            return
        body, size = bytearray(), 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_bytes:
                body += chunk
            elif size > DRAIN_FACTOR * self.max_bytes:
                await _answer(send, 413, too_big % f"more than {size}", close=True)
                return
            if not message.get("more_body", False):
                break
        if size > self.max_bytes:
            await _answer(send, 413, too_big % size)
            return
        if scope["path"].endswith(":predict"):
            problem = self._non_json_numbers(bytes(body))
            if problem is not None:
                await _answer(send, problem.status, str(problem))
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _non_json_numbers(self, body: bytes) -> BadInstance | None:
        """The error to answer for a body with NaN/Infinity (None when the server's parser takes it)."""
        try:
            orjson.loads(body)
            return None
        except orjson.JSONDecodeError:
            pass
        try:
            doc = json.loads(body)  # the standard library accepts NaN and Infinity
        except ValueError:
            return None  # not JSON at all: the server's own decoder answers 400
        try:
            self.validate(doc)
        except BadInstance as exc:
            return exc
        return BadInstance("request body: NaN and Infinity are not valid JSON numbers")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body on once, then waits on the real one (disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, status: int, error: str, close: bool = False) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Server(ModelServer):
    """``ModelServer`` listening on a chosen address (kserve 0.21 always binds 0.0.0.0)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    async def _serve(self) -> None:
        # start() has built the REST server but it has not bound yet: set the address here.
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        await super()._serve()


def validate_v1(predictor: Predictor) -> Callable[[Any], None]:
    """A check of a decoded v1 body's structure and features (no raw-media decoding, no inference)."""

    def check(doc: Any) -> None:
        if not isinstance(doc, dict) or "instances" not in doc:
            raise BadInstance('request: expected a JSON object {"instances": [...]} (KServe v1 protocol)')
        predictor.parse_instances(doc["instances"])

    return check


def serve(model: str, *, version: str | int | None = None, fold: str = "ensemble", name: str = "mer",
          host: str = "0.0.0.0", port: int = 8080, grpc_port: int = 0, device: str = "cpu",
          absent: str = "auto", limits: Limits | None = None, threads: int = 0) -> None:
    """Load ``model`` and serve it until interrupted.

    Args:
        model: run/fold directory, checkpoint or registry model (local or gs://).
        version: registry version (``champion`` default, ``latest`` or N).
        fold: a fold number or ``ensemble``.
        name: model name in the endpoint paths.
        host: address to listen on.
        port: HTTP port.
        grpc_port: gRPC (v2) port; 0 = no gRPC server.
        device: ``cpu``, ``cuda`` or ``auto``.
        absent: absent-modality policy (``auto`` = as trained).
        limits: request size limits.
        threads: torch CPU threads (0 = torch's default, the machine's cores; in a pod set it to the
            CPU limit, or the threads outnumber the cores the pod may use).

    Raises:
        PredictionError: the model cannot be loaded.
    """
    limits = limits or Limits()
    if threads > 0:

        torch.set_num_threads(threads)
    mer_model = MerModel(name, lambda: Predictor.load(model, version=version, fold=fold, device=device,
                                                      absent=absent, limits=limits))
    mer_model.load()
    predictor = mer_model._ready_predictor()
    info = predictor.describe()
    log.info("serving %s v%s (%s, fold %s) as %r on http://%s:%d; raw media: %s", info["model"],
             info["version"] or "-", info["type"], info["fold"], name, host, port,
             ", ".join(info["raw_media"]) or f"off ({info['raw_media_off']})")
    kserve_app.add_middleware(RequestGuard, max_bytes=limits.max_request_bytes, validate=validate_v1(predictor))
    kserve_app.add_exception_handler(BadInstance, _bad_instance_handler)
    server = _Server(host, http_port=port, grpc_port=grpc_port or 8081, enable_grpc=grpc_port > 0, workers=1)
    server.start([mer_model])


async def _bad_instance_handler(_: Any, exc: Exception) -> Any:
    status = exc.status if isinstance(exc, BadInstance) else 400
    return JSONResponse(status_code=status, content={"error": str(exc)})
