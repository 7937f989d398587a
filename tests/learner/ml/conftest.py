"""Fixtures for the ML tests: a tiny random BERT with the real tokenizer, toy texts,
and the real datasets (for the slow tests) when they are present."""

from __future__ import annotations

import os

# Before transformers is imported anywhere: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """Run every ML test on one torch thread, restoring the setting afterwards.

    On a busy 2-core machine two OpenMP threads spin-wait on each other: measured here,
    a tiny-model fit took 11-23 s with 2 threads and 2.5 s with 1, and the slow
    full fine-tuning test 600 s with 2 threads while other jobs ran.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights, saved with the REAL MiniLM tokenizer.

    Loading it by path exercises the same code as the real model, in milliseconds.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from learner.ml.encoder import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(1234)
    model = BertModel(config)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


POSITIVE = ["good", "great", "wonderful", "lovely", "excellent", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "dreadful", "sad", "ugly"]
NEUTRAL = ["table", "chair", "window", "paper", "river", "street", "number", "yellow"]


@pytest.fixture(scope="session")
def toy_texts() -> tuple[list[str], list[int]]:
    """60 texts in 3 classes of mixed lengths (2..30 words); labels are indices 0..2."""
    import random

    rng = random.Random(7)
    texts, labels = [], []
    for i in range(60):
        label = i % 3
        words = [POSITIVE, NEGATIVE, NEUTRAL][label]
        length = rng.choice([2, 3, 5, 8, 13, 21, 30])
        texts.append(" ".join(rng.choice(words) for _ in range(length)))
        labels.append(label)
    return texts, labels


def datasets_dir() -> Path:
    """``$LABELWISE_DATASETS``, else ``shared/datasets`` beside the repository checkout."""
    override = os.environ.get("LABELWISE_DATASETS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def real_dataset() -> Any:
    """``load(name) -> list of rows`` over the real JSONL datasets; skips when absent."""
    folder = datasets_dir()
    if not folder.is_dir():
        pytest.skip(f"real datasets not found at {folder} (set LABELWISE_DATASETS)")

    def load(name: str) -> list[dict[str, Any]]:
        path = folder / f"{name}.jsonl"
        if not path.exists():
            pytest.skip(f"{path} is missing (set LABELWISE_DATASETS)")
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    return load
