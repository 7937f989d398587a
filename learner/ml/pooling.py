"""How an encoder's token vectors become one text vector: the checkpoint's own pooling.

A sentence-transformers checkpoint says how it was trained to be read: ``modules.json``
lists a ``Pooling`` module (its ``config.json`` names the mode: mean, CLS, max, ...) and
often a ``Normalize`` module. all-MiniLM-L6-v2, the default base model, was trained as a
mean-pooling sentence encoder, so classifying its ``[CLS]`` vector through BERT's pooler
(what ``BertForSequenceClassification`` does) throws away what it learned. Every mode of
the learner, the fast refresh's cached embeddings and the exported model read the text
vector this way. A checkpoint without a sentence-transformers configuration gets masked
mean pooling, which is what sentence-transformers itself builds for a plain encoder.

Both spellings of the pooling configuration are read: the legacy booleans
(``pooling_mode_mean_tokens: true``) and the newer ``pooling_mode: "mean"``. Written
folders use the legacy booleans, which every sentence-transformers version reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "lasttoken")
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"


class UnsupportedPooling(ValueError):
    """The checkpoint asks for a pooling (or a module) this code cannot reproduce."""


@dataclass(frozen=True)
class Pooling:
    """Pooling ``modes`` (concatenated in this order) and whether the vector is then scaled
    to unit length (a ``Normalize`` module)."""

    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False
    source: str = "default"  # "sentence-transformers" when read from the checkpoint

    def __post_init__(self) -> None:
        if not self.modes:
            raise UnsupportedPooling("a pooling needs at least one mode")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise UnsupportedPooling(
                f"pooling mode(s) {unknown} are not supported; supported: {list(MODES)}"
            )

    # -- reading and writing a checkpoint -------------------------------------------

    @classmethod
    def of_checkpoint(cls, folder: str | Path) -> Pooling:
        """The pooling a local checkpoint folder declares, or mean pooling without one."""
        root = Path(folder)
        modules_file = root / "modules.json"
        if not modules_file.is_file():
            return cls()
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        pooling_at = [i for i, kind in enumerate(kinds) if kind == "Pooling"]
        if not pooling_at:
            return cls(normalize="Normalize" in kinds, source="sentence-transformers")
        extra = [k for k in kinds[pooling_at[0] + 1:] if k != "Normalize"]
        if extra:
            # A Dense projection after pooling (some sentence encoders have one) would need
            # its weights carried too; refuse rather than silently read another vector.
            raise UnsupportedPooling(
                f"{root}: modules after pooling ({extra}) are not supported"
            )
        config_file = root / modules[pooling_at[0]].get("path", POOLING_DIR) / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if (
            config_file.is_file()) else {}
        return cls(modes=_modes_of(config), normalize="Normalize" in kinds,
                   source="sentence-transformers")

    def write_sentence_transformers(self, folder: str | Path, *, hidden_size: int,
                                    max_length: int) -> None:
        """``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json``,
        so that ``SentenceTransformer(folder)`` reads texts exactly as this pooling does
        (including truncation to ``max_length`` tokens)."""
        root = Path(folder)
        modules: list[dict[str, Any]] = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": POOLING_DIR,
             "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR,
                            "type": "sentence_transformers.models.Normalize"})
            (root / NORMALIZE_DIR).mkdir(parents=True, exist_ok=True)
        (root / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
        (root / POOLING_DIR).mkdir(parents=True, exist_ok=True)
        pooling_config: dict[str, Any] = {"word_embedding_dimension": hidden_size}
        pooling_config.update({key: mode in self.modes for key, mode in _LEGACY_KEYS.items()})
        (root / POOLING_DIR / "config.json").write_text(
            json.dumps(pooling_config, indent=2), encoding="utf-8")
        (root / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2),
            encoding="utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {"modes": list(self.modes), "normalize": self.normalize, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pooling:
        return cls(modes=tuple(data.get("modes", ("mean",))),
                   normalize=bool(data.get("normalize", False)),
                   source=str(data.get("source", "default")))

    # -- the computation --------------------------------------------------------------

    def output_size(self, hidden_size: int) -> int:
        return hidden_size * len(self.modes)

    def __call__(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(b, t, h) token vectors and (b, t) mask -> (b, h * len(modes)); padding never
        counts. Right padding is assumed (the tokenizers here pad on the right)."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        parts = []
        for mode in self.modes:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                summed = (hidden * mask).sum(dim=1)
                count = mask.sum(dim=1).clamp(min=1.0)
                parts.append(summed / (count if mode == "mean" else count.sqrt()))
            elif mode == "max":
                # Padding is pushed far below any real value before the max.
                parts.append(hidden.masked_fill(mask == 0, -1e9).max(dim=1).values)
            else:  # lasttoken: the last unmasked position of each row
                last = attention_mask.sum(dim=1).clamp(min=1) - 1
                parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        pooled = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled


def _modes_of(config: dict[str, Any]) -> tuple[str, ...]:
    declared = config.get("pooling_mode")
    if isinstance(declared, str):
        modes: tuple[str, ...] = (declared,)
    elif isinstance(declared, list | tuple):
        modes = tuple(str(m) for m in declared)
    else:
        modes = tuple(mode for key, mode in _LEGACY_KEYS.items() if config.get(key))
    # sentence-transformers reads a configuration that enables nothing as mean pooling.
    return modes or ("mean",)
