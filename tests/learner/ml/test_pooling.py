"""The checkpoint's own pooling: read from its sentence-transformers files, computed as
sentence-transformers computes it, written back so SentenceTransformer reads the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.ml.encoder import default_model_path, embed, load_encoder
from learner.ml.pooling import Pooling, UnsupportedPooling


def _write_st(folder: Path, pooling_config: dict, *, normalize: bool = False,
              extra: str | None = None) -> Path:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    if extra:
        modules.append({"idx": 3, "name": "3", "path": "3", "type": extra})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    return folder


def test_the_default_base_model_is_read_as_mean_pooling_with_normalisation() -> None:
    pooling = Pooling.of_checkpoint(default_model_path())
    assert pooling.modes == ("mean",)
    assert pooling.normalize is True
    assert pooling.source == "sentence-transformers"


def test_a_plain_checkpoint_gets_mean_pooling(tiny_model_dir: Path) -> None:
    assert Pooling.of_checkpoint(tiny_model_dir) == Pooling(("mean",), False, "default")


@pytest.mark.parametrize(("config", "modes"), [
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, ("cls",)),
    ({"pooling_mode_max_tokens": True}, ("max",)),
    ({"pooling_mode": "lasttoken"}, ("lasttoken",)),
    ({"pooling_mode": ["cls", "mean"]}, ("cls", "mean")),
    ({}, ("mean",)),
])
def test_both_spellings_of_the_pooling_configuration_are_read(
    tmp_path: Path, config: dict, modes: tuple[str, ...]
) -> None:
    assert Pooling.of_checkpoint(_write_st(tmp_path, config)).modes == modes


def test_a_pooling_or_module_it_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedPooling, match="weightedmean"):
        Pooling.of_checkpoint(_write_st(tmp_path / "a", {"pooling_mode": "weightedmean"}))
    with pytest.raises(UnsupportedPooling, match="Dense"):
        Pooling.of_checkpoint(
            _write_st(tmp_path / "b", {}, extra="sentence_transformers.models.Dense"))


def test_each_mode_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert Pooling(("mean",))(hidden, mask).tolist() == [[2.0, 4.0]]
    assert Pooling(("cls",))(hidden, mask).tolist() == [[1.0, 2.0]]
    assert Pooling(("max",))(hidden, mask).tolist() == [[3.0, 6.0]]
    assert Pooling(("lasttoken",))(hidden, mask).tolist() == [[3.0, 6.0]]
    sqrt = Pooling(("mean_sqrt_len_tokens",))(hidden, mask)
    np.testing.assert_allclose(sqrt.numpy(), [[4 / 2**0.5, 8 / 2**0.5]], rtol=1e-6)
    unit = Pooling(("cls", "max"), normalize=True)(hidden, mask)
    assert unit.shape == (1, 4)
    assert float(unit.norm()) == pytest.approx(1.0)


@pytest.mark.parametrize("modes", [("mean",), ("cls",), ("max",)])
def test_written_folders_read_alike_in_sentence_transformers(
    tiny_model_dir: Path, tmp_path: Path, modes: tuple[str, ...]
) -> None:
    from sentence_transformers import SentenceTransformer

    tokenizer, model = load_encoder(str(tiny_model_dir), device="cpu")
    folder = tmp_path / "st"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    pooling = Pooling(modes, normalize=True)
    pooling.write_sentence_transformers(folder, hidden_size=32, max_length=24)
    assert Pooling.of_checkpoint(folder).modes == modes

    texts = ["a short one", "and a somewhat longer text " * 4, "x"]
    ours = embed(texts, tokenizer=tokenizer, model=model, pooling=pooling, max_length=24)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
