"""Building blocks shared by MMIN, IF-MMIN and NMER (spec models.md section 2).

Faithful defaults reproduce the reference networks layer for layer (and parameter for parameter):

* :class:`LSTMEncoder` - 1-layer unidirectional LSTM, embedding = max over time of every hidden
  output, pads included (130->128: 133,120 params; 342->128: 241,664).
* :class:`TextCNN` - three ``Conv2d(1, 128, (k, D))`` (k = 3, 4, 5), ReLU, global max over time,
  concat (384), Dropout, Linear(384, 128), ReLU (1024->128: 1,622,528 params).
* :class:`FcClassifier` - [Linear, ReLU, (BatchNorm1d), (Dropout)] x len(layers), then Linear;
  returns ``(logits, penultimate feature)``.
* :class:`SharedEncoder` - the invariant encoder; ``default`` = 2 x (Linear, LeakyReLU) (33,024),
  ``v0200`` = 3 x (Linear, Sigmoid, Dropout) + Linear (66,048).
* :class:`ResidualAE` - 5 encoder/decoder blocks on the 384-d fused vector plus a 384-384
  transition (1,694,400 params), in the MMIN cascade and both IF-IM variants.
* :func:`init_reference` - the reference ``init_net``: kaiming-normal (fan_in) weights and zero bias
  on every module whose class name contains ``Linear`` or ``Conv``.

``pool="masked_maxpool"`` (improved recipe) restricts the max over time to the true length.  A
unidirectional LSTM's outputs before the pads do not depend on the pads, so this equals running a
packed sequence.  Every encoder takes ``lengths=None`` (pool over the whole padded sequence).

Both sequence encoders split into ``features`` (deterministic given the weights) and ``head``
(dropout and projection), so that the output on an all-zero input can be computed once and
scattered before the per-sample dropout (see :mod:`mer_lib.models.encoding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

POOLS = ("maxpool", "masked_maxpool")


def _check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    return pool


def time_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Boolean [B, steps] mask, True where position t < length (lengths are clamped to >= 1)."""
    pos = torch.arange(steps, device=lengths.device)
    return pos.unsqueeze(0) < lengths.clamp(min=1).unsqueeze(1)


class LSTMEncoder(nn.Module):
    """Sequence encoder: LSTM over [B, T, D] then max-pooling over time -> [B, hidden_size].

    Args:
        input_dim: feature size D (130 for ComParE, 342 for Denseface).
        hidden_size: LSTM hidden size (128).
        pool: ``maxpool`` (over pads too, faithful) or ``masked_maxpool`` (over the true length).
    """

    def __init__(self, input_dim: int, hidden_size: int = 128, pool: str = "maxpool") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        self.output_dim = hidden_size
        self.rnn = nn.LSTM(input_dim, hidden_size, num_layers=1, batch_first=True, bidirectional=False)

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``x`` [B, T, D]; ``lengths`` [B] is used only by ``masked_maxpool``."""
        out, _ = self.rnn(x)
        if self.pool == "masked_maxpool" and lengths is not None:
            valid = time_mask(lengths, out.shape[1]).unsqueeze(-1)
            out = out.masked_fill(~valid, float("-inf"))
        return out.max(dim=1).values

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """Identity (the LSTM encoder has no stochastic part); mirrors :meth:`TextCNN.head`."""
        return feats

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``x`` [B, T, D] -> [B, hidden_size]."""
        return self.features(x, lengths)


class _NonzeroRowProjection(torch.autograd.Function):
    """``rows @ weight.T`` whose forward multiplies only the rows that are not all zero.

    A row of zeros projects to exact zeros, and the text features carry many such rows: the release
    pads every utterance to 22 tokens in the file (about 12 are real on IEMOCAP), batches pad further
    and a missing modality is all zeros.  The forward skips them (each kept row's dot products are
    the very same, bit for bit).  The backward is the plain product's own, over every row: the
    weight gradient sums over the rows, and a sum over fewer rows would be blocked differently and
    round differently, so training would drift from the reference in the last bits.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, rows: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, weight)
        keep = rows.ne(0).any(dim=1)
        n_keep = int(keep.sum())
        if n_keep in (0, rows.shape[0]):  # nothing to skip, or nothing left
            return rows @ weight.t()
        idx = keep.nonzero().squeeze(1)
        proj = rows.index_select(0, idx) @ weight.t()  # dtype follows autocast
        return proj.new_zeros(rows.shape[0], weight.shape[0]).index_copy(0, idx, proj)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        rows, weight = ctx.saved_tensors
        # the same products autograd forms for ``rows @ weight.t()`` (mm's backward, weight.t()
        # being column-major): grad_weight = grad^T rows, grad_rows = grad weight
        grad_rows = grad.mm(weight.to(grad.dtype)).to(rows.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(rows.to(grad.dtype)).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return grad_rows, grad_weight


def _project_nonzero_rows(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight.T`` [N, F], multiplying only the non-zero rows (see :class:`_NonzeroRowProjection`)."""
    return _NonzeroRowProjection.apply(rows, weight)


class TextCNN(nn.Module):
    """Lexical encoder: 1-D convolutions over tokens, ReLU, max over time, Dropout, Linear, ReLU.

    The convolutions are stored as ``Conv2d(1, C, (k, D))`` like the reference (same parameters and
    fan-in for the kaiming init) and computed as one matrix product plus shifted sums.

    Args:
        input_dim: token feature size D (1024 for BERT-large).
        emb_size: output size (128).
        kernel_heights: kernel sizes in tokens (3, 4, 5); the input needs T >= max(kernel_heights).
        out_channels: channels per kernel size (128).
        dropout: dropout on the concatenated pooled features (0.5 in the reference recipes).
        pool: ``maxpool`` or ``masked_maxpool`` (windows entirely inside the true length, at least one).
    """

    def __init__(self, input_dim: int, emb_size: int = 128, kernel_heights: Sequence[int] = (3, 4, 5),
                 out_channels: int = 128, dropout: float = 0.5, pool: str = "maxpool") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        self.kernel_heights = tuple(int(k) for k in kernel_heights)
        self.output_dim = emb_size
        self.feature_dim = out_channels * len(self.kernel_heights)
        self.convs = nn.ModuleList(nn.Conv2d(1, out_channels, (k, input_dim)) for k in self.kernel_heights)
        self.dropout = nn.Dropout(dropout)
        self.embd = nn.Sequential(nn.Linear(self.feature_dim, emb_size), nn.ReLU())

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic part: pooled convolution features [B, out_channels * n_kernels]."""
        batch, steps, dim = x.shape
        if steps < max(self.kernel_heights):
            raise ValueError(f"TextCNN needs at least {max(self.kernel_heights)} tokens, got a batch "
                             f"padded to {steps}")
        # One GEMM of every token against every kernel tap, then shifted sums over the taps: the
        # same sums as the convolutions, about 1.5x faster than Conv2d on CPU.
        taps = [conv.weight.squeeze(1) for conv in self.convs]  # [C, k, D] each
        proj = _project_nonzero_rows(x.reshape(batch * steps, dim), torch.cat([w.reshape(-1, dim) for w in taps]))
        proj = proj.view(batch, steps, -1)
        pooled, offset = [], 0
        for conv, w in zip(self.convs, taps, strict=True):
            channels, k, _ = w.shape
            y = proj[:, :, offset:offset + channels * k].view(batch, steps, channels, k)
            offset += channels * k
            windows = steps - k + 1
            act = y[:, 0:windows, :, 0]
            for j in range(1, k):
                act = act + y[:, j:windows + j, :, j]
            act = F.relu(act + conv.bias)  # [B, T - k + 1, C]
            if self.pool == "masked_maxpool" and lengths is not None:
                valid = time_mask((lengths - k + 1).clamp(min=1), windows).unsqueeze(-1)
                act = act.masked_fill(~valid, float("-inf"))
            pooled.append(act.max(dim=1).values)
        return torch.cat(pooled, dim=1)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """Stochastic part (dropout) and projection: [B, feature_dim] -> [B, emb_size]."""
        return self.embd(self.dropout(feats))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embed tokens ``x`` [B, T, D] -> [B, emb_size]."""
        return self.head(self.features(x, lengths))


class FcClassifier(nn.Module):
    """MLP classifier returning ``(logits, penultimate feature)``.

    Args:
        input_dim: input size (768 utt_shared, 384 utt_fusion, 320 MMIN/IF-MMIN).
        layers: hidden sizes ([128, 128]).
        output_dim: number of classes.
        dropout: dropout after each hidden layer (0 = none).
        use_bn: BatchNorm1d after each hidden ReLU (NMER stage 2).
    """

    def __init__(self, input_dim: int, layers: Sequence[int], output_dim: int, dropout: float = 0.3,
                 use_bn: bool = False) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        dim = input_dim
        for width in layers:
            mods += [nn.Linear(dim, int(width)), nn.ReLU()]
            if use_bn:
                mods.append(nn.BatchNorm1d(int(width)))
            if dropout > 0:
                mods.append(nn.Dropout(dropout))
            dim = int(width)
        self.module = nn.Sequential(*mods) if mods else nn.Identity()
        self.fc_out = nn.Linear(dim, output_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, input_dim] -> (logits [B, output_dim], feature [B, layers[-1]])."""
        feat = self.module(x)
        return self.fc_out(feat), feat


SHARED_VARIANTS = ("default", "v0200")


class SharedEncoder(nn.Module):
    """The modality-invariant encoder (one network applied to every modality's embedding).

    Args:
        dim: input and output size (128).
        variant: ``default`` = Linear, LeakyReLU, Linear, LeakyReLU (reference code without a run tag);
            ``v0200`` = 3 x (Linear, Sigmoid, Dropout) + Linear (most likely the published runs).
        dropout: dropout of the ``v0200`` variant.
    """

    def __init__(self, dim: int = 128, variant: str = "default", dropout: float = 0.3) -> None:
        super().__init__()
        if variant not in SHARED_VARIANTS:
            raise ValueError(f"SharedEncoder variant must be one of {', '.join(SHARED_VARIANTS)}, got {variant!r}")
        self.variant = variant
        if variant == "default":
            self.net = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.01), nn.Linear(dim, dim), nn.LeakyReLU(0.01))
        else:
            mods: list[nn.Module] = []
            for _ in range(3):
                mods += [nn.Linear(dim, dim), nn.Sigmoid(), nn.Dropout(dropout)]
            self.net = nn.Sequential(*mods, nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, dim] -> [B, dim]."""
        return self.net(x)


AE_MODES = ("mmin", "head", "paper")


class ResidualAE(nn.Module):
    """Cascade of ``n_blocks`` autoencoder blocks plus a transition layer (MMIN / IF-IM).

    Block encoder: Linear(in, l0), LeakyReLU, ..., Linear(l_{n-2}, l_{n-1}) (no final activation);
    block decoder mirrors it with ReLU; transition = Linear(in, in), ReLU, Linear(in, in).  With
    x the fused vector and s the invariant vector (IF-IM only), block i gets u_i and emits
    z_i = Enc_i(u_i), h_i = Dec_i(z_i); latents = [z_1..z_n]:

    * ``mmin``: u_1 = x, u_i = u_{i-1} + h_{i-1}; recon = T(u_n + h_n).
    * ``head`` (IF-MMIN since 2024-09): u_i = h_{i-1} + s with h_0 = x; recon = T(h_n).
    * ``paper`` (IF-MMIN as published, also NMER's autoencoder_2): u_i = x + i*s; recon = T(u_n + h_n).
      Decoders 1..n-1 are never used (their outputs were discarded), so they are not computed.

    Args:
        input_dim: size of the fused vector (384).
        layers: encoder widths ([256, 128, 64]); the decoder mirrors them.
        n_blocks: number of blocks (5).
        dropout: dropout after each hidden activation (0 in every reference recipe).
        use_bn: BatchNorm1d after each hidden activation (off in every reference recipe).
        mode: ``mmin``, ``head`` or ``paper``.
    """

    def __init__(self, input_dim: int = 384, layers: Sequence[int] = (256, 128, 64), n_blocks: int = 5,
                 dropout: float = 0.0, use_bn: bool = False, mode: str = "mmin") -> None:
        super().__init__()
        if mode not in AE_MODES:
            raise ValueError(f"ResidualAE mode must be one of {', '.join(AE_MODES)}, got {mode!r}")
        self.mode, self.n_blocks = mode, n_blocks
        self.latent_dim = int(layers[-1]) * n_blocks
        widths = [input_dim] + [int(w) for w in layers]
        for i in range(n_blocks):
            setattr(self, f"encoder_{i}", self._stack(widths, nn.LeakyReLU, dropout, use_bn))
            setattr(self, f"decoder_{i}", self._stack(widths[::-1], nn.ReLU, dropout, use_bn))
        self.transition = nn.Sequential(nn.Linear(input_dim, input_dim), nn.ReLU(), nn.Linear(input_dim, input_dim))

    @staticmethod
    def _stack(widths: list[int], act: type[nn.Module], dropout: float, use_bn: bool) -> nn.Sequential:
        mods: list[nn.Module] = []
        for j, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            mods.append(nn.Linear(a, b))
            if j < len(widths) - 2:  # the reference strips the activation (+bn/dropout) of the last layer
                mods.append(act())
                if use_bn:
                    mods.append(nn.BatchNorm1d(b))
                if dropout > 0:
                    mods.append(nn.Dropout(dropout))
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, shared: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(recon [B, input_dim], latents [B, n_blocks * layers[-1]])``.

        Raises:
            ValueError: ``shared`` missing for the IF-IM modes.
        """
        if self.mode != "mmin" and shared is None:
            raise ValueError(f"ResidualAE mode {self.mode!r} needs the invariant vector `shared`")
        latents = []
        if self.mode == "mmin":
            u, h = x, torch.zeros_like(x)
            for i in range(self.n_blocks):
                u = u + h
                z = getattr(self, f"encoder_{i}")(u)
                h = getattr(self, f"decoder_{i}")(z)
                latents.append(z)
            out = u + h
        elif self.mode == "head":
            h = x
            for i in range(self.n_blocks):
                z = getattr(self, f"encoder_{i}")(h + shared)
                h = getattr(self, f"decoder_{i}")(z)
                latents.append(z)
            out = h
        else:
            u = x
            for i in range(self.n_blocks):
                u = u + shared
                latents.append(getattr(self, f"encoder_{i}")(u))
            out = u + getattr(self, f"decoder_{self.n_blocks - 1}")(latents[-1])
        return self.transition(out), torch.cat(latents, dim=-1)


def init_reference(module: nn.Module) -> nn.Module:
    """Reference ``init_net``: kaiming_normal_(a=0, fan_in) + zero bias on Linear/Conv modules.

    Matching is on the class name, as in the reference (so e.g. the attention out-projection
    ``NonDynamicallyQuantizableLinear`` is re-initialised too).  LSTM and BatchNorm1d keep the PyTorch
    defaults.  Returns ``module`` for chaining.
    """
    for m in module.modules():
        name = type(m).__name__
        weight = getattr(m, "weight", None)
        if ("Linear" in name or "Conv" in name) and isinstance(weight, torch.Tensor):
            nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            bias = getattr(m, "bias", None)
            if isinstance(bias, torch.Tensor):
                nn.init.zeros_(bias)
    return module


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
