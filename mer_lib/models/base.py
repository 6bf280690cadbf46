"""The small interface between models and the training engine.

A model module defines the network and its losses; the engine (``mer_lib.training``) knows nothing
model-specific beyond this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from mer_lib.data.dataset import Batch


@dataclass
class StepOutput:
    """What a training forward returns: logits, the weighted total loss and its named terms."""

    logits: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


class MERModel(nn.Module, abc.ABC):
    """Base class of every model.

    Subclasses implement :meth:`training_step` and :meth:`predict_logits`, and list their
    sub-networks in :meth:`subnets` (one optimiser param group and one gradient-clipping norm each,
    as in the reference).  A stage-2 model also implements :meth:`attach_teacher`.
    """

    #: model name as used by ``mer train --model``
    name: str = ""
    #: True for stage-2 models, which need a frozen stage-1 teacher
    needs_teacher: bool = False
    #: training inputs: "full" (stage 1), "random_missing" (stage 2), "random_missing_or_full", or a list
    #: of condition names (each utterance under each of them; selection on them too)
    train_conditions: str | list[str] = "full"
    #: the teacher's model name(s) this model accepts
    teacher_models: tuple[str, ...] = ()
    #: True when missing modalities reach the model as noise (the ``noise`` config section), not zeros
    trains_on_noise: bool = False

    @abc.abstractmethod
    def subnets(self) -> dict[str, nn.Module]:
        """Trainable sub-networks by name (e.g. ``{"A": ..., "L": ..., "V": ..., "C": ...}``)."""
        ...

    @abc.abstractmethod
    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """Forward + loss for one training batch (the batch mask says what is missing)."""
        ...

    @abc.abstractmethod
    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward: logits [B, C] for inputs masked by ``batch.mask``."""
        ...

    def attach_teacher(self, teacher: MERModel) -> None:
        """Stage 2: keep ``teacher`` frozen in eval mode and initialise shared parts from it."""
        raise TypeError(f"model {self.name!r} takes no teacher")

    def trainable_parameters(self) -> int:
        """Number of trainable parameters (the frozen teacher excluded)."""
        return sum(p.numel() for net in self.subnets().values() for p in net.parameters() if p.requires_grad)
