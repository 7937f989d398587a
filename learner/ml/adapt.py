"""Task-adaptive pretraining (Gururangan et al., ACL 2020): continue the encoder's masked-
language-model training on the project's own unlabelled texts before rounds fine-tune it.

``adapt_encoder(base, texts, out)`` loads the checkpoint with a masked-language-model head
(transformers' ``AutoModelForMaskedLM``; a sentence encoder shipped without one gets a new
head, tied to its word embeddings), trains it for a bounded number of steps on the texts
with the usual 15% masking (``DataCollatorForLanguageModeling``), and saves the encoder
alone, with the base's tokenizer and sentence-transformers files, so ``out`` is a base
model like any other: rounds read it through ``TrainConfig.model_name_or_path``.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.encoder import bucketed_batches, default_model_path, pick_device
from learner.ml.encoder import tokenize as tokenize_texts
from learner.ml.pooling import Pooling

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AdaptConfig:
    """How long and how hard to adapt: ``max_steps`` bounds the job's time (about
    ``max_steps * batch_size`` texts seen)."""

    max_steps: int = 300
    batch_size: int = 16
    max_length: int = 128
    learning_rate: float = 5e-5
    mlm_probability: float = 0.15
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_texts: int = 20_000  # a seeded sample of a larger pool
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be >= 1")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError("mlm_probability must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adapt_encoder(
    base: str | None,
    texts: Sequence[str],
    out: str | Path,
    *,
    config: AdaptConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Adapt ``base`` (None: the shipped MiniLM) to ``texts``; writes the encoder folder
    ``out`` and returns what happened (steps, seconds, the masked-LM loss before and
    after on a held-out sample of the texts)."""
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        get_linear_schedule_with_warmup,
    )

    from learner.ml.train import seed_everything

    cfg = config or AdaptConfig()
    report: ProgressFn = progress or (lambda phase, step, total: None)
    started = time.perf_counter()
    source = base or default_model_path()
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        raise ValueError("adaptation needs unlabelled texts: the project has fewer than 2")
    if len(texts) > cfg.max_texts:
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), cfg.max_texts, replace=False))]
    order = rng.permutation(len(texts))
    n_held = min(256, max(1, len(texts) // 10))
    held = [texts[i] for i in order[:n_held]]
    train = [texts[i] for i in order[n_held:]] or held

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForMaskedLM.from_pretrained(source)
    device = pick_device(cfg.device)
    model.to(device)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability)
    ids = tokenize_texts(train, tokenizer, cfg.max_length)
    held_ids = tokenize_texts(held, tokenizer, cfg.max_length)

    def masked_batch(rows: Sequence[Sequence[int]], seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        batch = collator([{"input_ids": list(r)} for r in rows])
        return {k: v.to(device) for k, v in batch.items()}

    def held_loss() -> float:
        model.eval()
        losses = []
        with torch.inference_mode():
            for b, idx in enumerate(bucketed_batches([len(x) for x in held_ids], 32)):
                batch = masked_batch([held_ids[i] for i in idx], 10_000 + b)
                losses.append(float(model(**batch).loss))
        return float(np.mean(losses))

    report("adapting", 0, cfg.max_steps)
    loss_before = held_loss()
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr=cfg.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps)
    step, epoch = 0, 0
    model.train()
    while step < cfg.max_steps:
        for idx in bucketed_batches([len(x) for x in ids], cfg.batch_size, shuffle=True,
                                    seed=cfg.seed + epoch):
            if step >= cfg.max_steps:
                break
            loss = model(**masked_batch([ids[i] for i in idx], step)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            report("adapting", step, cfg.max_steps)
        epoch += 1
    loss_after = held_loss()

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    model.base_model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    pooling = Pooling.of_checkpoint(source)
    pooling.write_sentence_transformers(folder, hidden_size=int(model.config.hidden_size),
                                        max_length=cfg.max_length)
    if (Path(source) / "config_sentence_transformers.json").exists():
        shutil.copyfile(Path(source) / "config_sentence_transformers.json",
                        folder / "config_sentence_transformers.json")
    return {
        "steps": step,
        "epochs": round(step * cfg.batch_size / max(1, len(train)), 2),
        "texts": len(train),
        "held_out_texts": len(held),
        "mlm_loss_before": round(loss_before, 4),
        "mlm_loss_after": round(loss_after, 4),
        "perplexity_before": round(math.exp(min(loss_before, 50)), 2),
        "perplexity_after": round(math.exp(min(loss_after, 50)), 2),
        "seconds": round(time.perf_counter() - started, 1),
        "config": cfg.to_dict(),
        "base": source,
    }
