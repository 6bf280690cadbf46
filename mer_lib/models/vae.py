"""NMER's ConditionVAE: rebuild a joint representation from (noisy) specific features given invariant ones.

Layers (spec section 5.4):

1. input h = [fused, c]: specific features (384) and the invariant condition c (384) -> 768;
2. encoder: ``nn.TransformerEncoder`` of 5 ``TransformerEncoderLayer`` (d_model 768, 8 heads,
   feed-forward 128, dropout 0.1, ReLU, post-norm: the PyTorch defaults): 12,814,720 params;
3. mu = Linear(768, 64) and logvar = Linear(768, 64): 98,432 params;
4. z = mu + eps * exp(logvar / 2) in training; at evaluation z = mu (``sample`` draws as published);
5. decoder [z, c] (448) -> Linear 128 -> LeakyReLU -> Linear 384 -> Sigmoid: 107,008 params
   (``decoder_output`` swaps the Sigmoid for Tanh or nothing).

Attention (``attention``): the published code hands the encoder a 2-D [B, 768] tensor, which PyTorch
reads as ONE unbatched sequence of length B, so the samples of a batch attend to each other and a
prediction depends on the rest of its batch (``cross_batch``).  ``per_sample`` (default) feeds a
batch of length-1 sequences, so every sample only attends to itself.  The published module also
defines an ``fc_out`` Linear(448, 384) that its forward never uses (172,416 params); it is left out.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION_MODES = ("per_sample", "cross_batch")
DECODER_OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}


class ConditionVAE(nn.Module):
    """Transformer-encoder VAE conditioned on the invariant features.

    Args:
        input_dim: size of the specific (fused) features (384).
        cond_dim: size of the invariant condition c (384).
        latent_dim: size of z (64).
        output_dim: size of the reconstruction (384).
        layers: transformer encoder layers (5).
        heads: attention heads (8).
        ff_dim: transformer feed-forward width (128).
        dropout: transformer dropout (0.1).
        hidden_dim: decoder hidden width (128).
        attention: ``per_sample`` (default) or ``cross_batch`` (published).
        decoder_output: output activation, ``sigmoid`` (published), ``tanh`` or ``linear``.
    """

    def __init__(self, input_dim: int = 384, cond_dim: int = 384, latent_dim: int = 64, output_dim: int = 384,
                 layers: int = 5, heads: int = 8, ff_dim: int = 128, dropout: float = 0.1, hidden_dim: int = 128,
                 attention: str = "per_sample", decoder_output: str = "sigmoid") -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"model_params.vae_attention must be one of {', '.join(ATTENTION_MODES)}, "
                             f"got {attention!r}")
        if decoder_output not in DECODER_OUTPUTS:
            raise ValueError(f"model_params.vae_decoder_output must be one of {', '.join(DECODER_OUTPUTS)}, "
                             f"got {decoder_output!r}")
        d_model = input_dim + cond_dim
        if d_model % heads:
            raise ValueError(f"model_params.vae_heads: {heads} heads do not divide d_model {d_model}")
        self.attention = attention
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=heads, dim_feedforward=ff_dim, dropout=dropout)
        # enable_nested_tensor only matters for padding masks, which are never used here
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.fc_mu = nn.Linear(d_model, latent_dim)
        self.fc_logvar = nn.Linear(d_model, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim + cond_dim, hidden_dim), nn.LeakyReLU(),
                                     nn.Linear(hidden_dim, output_dim), DECODER_OUTPUTS[decoder_output]())

    def encode(self, fused: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` [B, latent] of ``[fused, cond]``."""
        h = torch.cat([fused, cond], dim=-1)
        if self.attention == "cross_batch":
            h = self.encoder(h)  # [B, d] = one unbatched sequence of B tokens (published)
        else:
            h = self.encoder(h.unsqueeze(0)).squeeze(0)  # [1, B, d]: B sequences of length 1
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, fused: torch.Tensor, cond: torch.Tensor, sample: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction [B, output], mu, logvar)``.

        Args:
            fused: specific features [B, input_dim].
            cond: invariant condition [B, cond_dim].
            sample: draw z (True) or use mu (False); None = draw only in training mode.
        """
        mu, logvar = self.encode(fused, cond)
        if sample is None:
            sample = self.training
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decoder(torch.cat([z, cond], dim=-1)), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dims, then averaged or summed over the batch.

    Raises:
        ValueError: unknown reduction.
    """
    per_sample = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(f"model_params.kl_reduction must be mean or sum, got {reduction!r}")
