"""The network every mode trains: a pretrained encoder, the checkpoint's own pooling, and a
linear head, with a temperature that calibrates the head's logits.

``PooledClassifier(encoder, pooling, n_labels)`` takes ``input_ids`` and
``attention_mask`` and returns raw logits (n, k); ``calibrated`` divides them by the
fitted temperature. The same module, wrapped by ``ExportGraph``, is what the ONNX export
traces, so the graph carries pooling, head and temperature inside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from learner.ml.pooling import Pooling
from learner.ml.tasks import Task


class PooledClassifier(nn.Module):
    """Encoder -> pooling -> dropout -> linear head. ``temperature`` is a buffer (never
    trained by backprop; see ``learner.ml.calibration``)."""

    def __init__(self, encoder: PreTrainedModel, pooling: Pooling, n_labels: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(pooling.output_size(hidden), n_labels)
        self.temperature: torch.Tensor
        self.register_buffer("temperature", torch.ones(()))

    @classmethod
    def from_pretrained(cls, path: str, pooling: Pooling, n_labels: int, *,
                        dropout: float = 0.1) -> PooledClassifier:
        # Eager attention: the same numbers in training, scoring and the traced ONNX graph.
        encoder = AutoModel.from_pretrained(path, attn_implementation="eager")
        return cls(encoder, pooling, n_labels, dropout)

    @property
    def config(self) -> Any:
        """The encoder's transformers config (what peft and layer decay read)."""
        return self.encoder.config

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(b, d): the pooled text vector the head classifies."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask
                              ).last_hidden_state
        return self.pooling(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(input_ids, attention_mask)))

    def forward_with_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw logits, pooled features) from one pass."""
        pooled = self.features(input_ids, attention_mask)
        return self.head(self.dropout(pooled)), pooled

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


class ExportGraph(nn.Module):
    """What the ONNX file computes: (input_ids, attention_mask) -> (calibrated logits,
    probabilities: the task's activation, ``Task.activate_tensor``)."""

    def __init__(self, model: PooledClassifier, *, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model.calibrated(self.model(input_ids, attention_mask))
        probs = self.task.activate_tensor(logits)
        return logits, probs
