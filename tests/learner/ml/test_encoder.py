from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.ml.encoder import (
    bucketed_batches,
    default_model_path,
    embed,
    load_encoder,
    pad_batch,
    pick_device,
    tokenize,
)


def test_default_model_path_is_a_local_folder_with_weights_and_tokenizer() -> None:
    folder = Path(default_model_path())
    assert (folder / "config.json").exists()
    assert (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists()


def test_pick_device_honours_a_preference_and_otherwise_picks_cuda_when_present() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected


def test_load_encoder_reads_model_and_tokenizer_from_the_same_folder(tiny_model_dir: Path) -> None:
    tokenizer, model = load_encoder(str(tiny_model_dir), device="cpu")
    assert model.config.hidden_size == 32
    assert not model.training
    assert len(tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("n,batch_size", [(1, 4), (10, 3), (64, 64), (100, 7)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_bucketing_returns_every_index_exactly_once(n: int, batch_size: int, shuffle: bool) -> None:
    lengths = np.random.default_rng(0).integers(1, 200, size=n)
    batches = list(bucketed_batches(lengths, batch_size, shuffle=shuffle, seed=3))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)


def test_bucketing_of_nothing_yields_no_batch() -> None:
    assert list(bucketed_batches([], 8)) == []


def test_bucketing_groups_similar_lengths_so_padding_is_small() -> None:
    lengths = np.random.default_rng(1).integers(5, 128, size=512)

    def padded_tokens(batches: list[np.ndarray]) -> int:
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    bucketed = list(bucketed_batches(lengths, 32))
    in_order = [np.arange(i, min(i + 32, 512)) for i in range(0, 512, 32)]
    # Sorted batches pad almost nothing; batches in arrival order pad to ~the maximum.
    assert padded_tokens(bucketed) < 1.1 * lengths.sum()
    assert padded_tokens(bucketed) < 0.7 * padded_tokens(in_order)
    # Without shuffling, each batch is a contiguous run of the length ranking.
    for batch in bucketed:
        assert lengths[batch].max() - lengths[batch].min() <= 10


def test_shuffled_bucketing_varies_with_the_seed_but_keeps_lengths_together() -> None:
    lengths = np.random.default_rng(2).integers(5, 128, size=256)
    first = [b.tolist() for b in bucketed_batches(lengths, 16, shuffle=True, seed=0)]
    again = [b.tolist() for b in bucketed_batches(lengths, 16, shuffle=True, seed=0)]
    other = [b.tolist() for b in bucketed_batches(lengths, 16, shuffle=True, seed=1)]
    assert first == again
    assert first != other
    assert all(np.ptp(lengths[b]) <= 12 for b in first)


def test_pad_batch_pads_to_the_longest_in_the_batch() -> None:
    batch = pad_batch([[101, 7, 102], [101, 102]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_tokenize_truncates_to_max_length(tiny_model_dir: Path) -> None:
    tokenizer, _ = load_encoder(str(tiny_model_dir), device="cpu")
    ids = tokenize(["word " * 500, "hi"], tokenizer, max_length=16)
    assert [len(x) for x in ids] == [16, 3]  # [CLS] hi [SEP]


def test_embed_is_independent_of_batch_order_and_batch_size(
    tiny_model_dir: Path, toy_texts: tuple[list[str], list[int]]
) -> None:
    tokenizer, model = load_encoder(str(tiny_model_dir), device="cpu")
    texts = toy_texts[0][:30]
    reference = embed(texts, tokenizer=tokenizer, model=model, max_length=64, batch_size=64)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = embed([texts[i] for i in perm], tokenizer=tokenizer, model=model,
                     max_length=64, batch_size=4)
    one_by_one = embed(texts, tokenizer=tokenizer, model=model, max_length=64, batch_size=1)

    assert reference.shape == (30, 32) and reference.dtype == np.float32
    np.testing.assert_allclose(shuffled, reference[perm], atol=1e-5)
    np.testing.assert_allclose(one_by_one, reference, atol=1e-5)


def test_embed_follows_the_pooling_and_handles_no_texts(tiny_model_dir: Path) -> None:
    from learner.ml.pooling import Pooling

    tokenizer, model = load_encoder(str(tiny_model_dir), device="cpu")
    unit = embed(["a b c", "d"], tokenizer=tokenizer, model=model,
                 pooling=Pooling(normalize=True))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    assert embed([], tokenizer=tokenizer, model=model).shape == (0, 32)
