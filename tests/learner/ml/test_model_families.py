"""Every mode on encoders of several families, built tiny and random in code: layer decay,
gradual unfreezing, LoRA and the pooling are read from the model, never from names like
"MiniLM" or "encoder.layer"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.ml.config import Mode, TrainConfig
from learner.ml.train import TextClassifier, _layer_of, _n_layers, build_model, param_groups

LABELS = ["positive", "negative", "neutral"]


def _tiny(family: str, vocab_size: int) -> torch.nn.Module:
    import transformers as tf

    common = {"vocab_size": vocab_size, "max_position_embeddings": 130}
    if family == "bert":
        return tf.BertModel(tf.BertConfig(hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64,
                                          **common))
    if family == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2,
                                                      hidden_dim=64, **common))
    if family == "roberta":
        return tf.RobertaModel(tf.RobertaConfig(hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=64,
                                                pad_token_id=0, **common))
    if family == "deberta-v2":
        return tf.DebertaV2Model(tf.DebertaV2Config(hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2,
                                                    intermediate_size=64, **common))
    return tf.ModernBertModel(tf.ModernBertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        pad_token_id=0, global_attn_every_n_layers=2, **common))


FAMILIES = ["bert", "distilbert", "roberta", "deberta-v2", "modernbert"]


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    from transformers import AutoTokenizer

    from learner.ml.encoder import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    model = _tiny(request.param, tokenizer.vocab_size)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("mode", ["head", "full", "gradual", "lora", "auto"])
def test_every_mode_trains_on_every_family(
    family_dir: Path, toy_texts: tuple[list[str], list[int]], mode: Mode, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    config = TrainConfig(model_name_or_path=str(family_dir), mode=mode, max_length=32,
                         batch_size=8, epochs=2, learning_rate=1e-3, device="cpu",
                         ladder_min_labels=10)
    clf = TextClassifier(config, LABELS).fit(texts, labels)
    probs = clf.predict_proba(texts[:6])
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    clf.save(tmp_path / "model")
    again = TextClassifier.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(again.predict_proba(texts[:6]), probs, atol=1e-5)


def test_layer_decay_and_unfreezing_find_every_layer_of_every_family(family_dir: Path
                                                                      ) -> None:
    config = TrainConfig(model_name_or_path=str(family_dir), layer_lr_decay=0.5,
                         learning_rate=1e-4, head_learning_rate=1e-3)
    model, _ = build_model(config, 3)
    depths = {_layer_of(name, _n_layers(model)) for name, _ in model.named_parameters()}
    # Embeddings (0), each of the 2 layers, and the head (3): nothing lumped with the head.
    assert depths == {0, 1, 2, 3}, sorted(depths)
    groups = {g["name"].split("/")[0]: g["lr"] for g in param_groups(model, config)}
    assert groups == pytest.approx({"head": 1e-3, "layer_1": 1e-4, "layer_0": 5e-5,
                                    "embeddings": 2.5e-5})


def test_lora_uses_peft_defaults_where_they_exist_and_every_linear_layer_elsewhere(
    family_dir: Path, toy_texts: tuple[list[str], list[int]]
) -> None:
    from learner.ml.train import _with_lora

    config = TrainConfig(model_name_or_path=str(family_dir))
    model, _ = build_model(config, 3)
    wrapped = _with_lora(model.encoder, config)
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1]
               for name, _ in wrapped.named_parameters() if "lora_A" in name}
    assert adapted, "no adapters were added"
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in wrapped.parameters()) / 2
