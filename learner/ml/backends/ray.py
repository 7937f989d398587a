"""Run pool scoring, and data-parallel fine-tuning, on a Ray cluster.

Same interface as ``learner.ml.backends.local.LocalBackend``: ``train`` returns a fitted
``TextClassifier``; ``score_chunks`` yields ``(ids, probs, embeddings)`` per chunk, in the
order the chunks came in.

Scoring: the classifier is saved once into the object store as its artifact files (the
folder ``TextClassifier.save`` writes), and a pool of ``_Scorer`` actors each loads it once
with ``TextClassifier.load``; chunks then go round-robin to the actors with at most
``2 x actors`` chunks in flight, so the driver's memory stays bounded by a few chunks
however large the pool is, and the database cursor is read no faster than the cluster
scores. Shipping the files (not a pickled model) makes a GPU-trained model load on a
CPU-only node, and needs no filesystem shared between the nodes. Any other object with
``proba_and_embed`` is pickled as it is, so its class must import without Django.

Training: with ``num_workers > 1`` (and mode ``full``) the fit runs under Ray Train's
``TorchTrainer``, one DDP process per worker, each on its own shard of the labelled
texts. After each epoch rank 0 scores the validation split (macro-F1, micro for
multi-label, then loss, as ``TextClassifier.fit``) and keeps the best epoch's weights;
``early_stopping_patience`` epochs without improvement stop every rank (the decision is
broadcast, since DDP needs all ranks to take the same steps). Rank 0's best weights come
back as a checkpoint and the driver evaluates the validation split and tunes thresholds
as ``TextClassifier.fit`` does. With a handful of labels per round the local fit is
usually as fast, so ``num_workers`` defaults to 1 (local training).

Configured by the environment (see ``from_env``): ``RAY_ADDRESS`` (unset: a local
cluster started by ``ray.init()``), ``LABELWISE_RAY_TRAIN_WORKERS`` (default 1),
``LABELWISE_RAY_SCORERS`` (default: one per CPU in the cluster),
``LABELWISE_RAY_USE_GPU`` (1: one GPU per scorer and per training worker) and
``LABELWISE_RAY_STORAGE`` (where Ray Train writes checkpoints; every node must reach it
when the cluster has more than one).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.artifact import data_fingerprint, text_ids, write_meta
from learner.ml.backends.local import Chunk, LocalBackend, ScoredChunk
from learner.ml.config import ScoreConfig, TrainConfig
from learner.ml.evaluate import evaluate
from learner.ml.train import ProgressFn, TextClassifier, train_validation_split, tune_thresholds

log = logging.getLogger("labelwise.learner")

ArtifactFiles = dict[str, bytes]
"""An artifact folder as {relative path: contents}: what travels through the object store."""


def pack_artifact(classifier: TextClassifier) -> ArtifactFiles:
    """The files ``classifier.save`` writes, read back into memory."""
    with tempfile.TemporaryDirectory(prefix="labelwise-ray-") as tmp:
        classifier.save(tmp)
        root = Path(tmp)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def unpack_artifact(files: ArtifactFiles, folder: Path) -> Path:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


class _Scorer:
    """Ray actor body: loads the artifact once, then scores chunk after chunk.

    ``payload`` is the artifact's files (a ``TextClassifier``), or any other object with
    ``proba_and_embed`` (e.g. the cold start's frozen encoder), pickled as it is.
    """

    def __init__(self, payload: Any, batch_size: int, max_length: int | None) -> None:
        import torch

        # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch must follow it, not the node.
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.classifier: Any = payload
        if isinstance(payload, dict):
            with tempfile.TemporaryDirectory(prefix="labelwise-scorer-") as tmp:
                self.classifier = TextClassifier.load(unpack_artifact(payload, Path(tmp)))
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        probs, embeddings = self.classifier.proba_and_embed(
            texts, batch_size=self.batch_size, max_length=self.max_length
        )
        return probs, embeddings


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not an integer") from exc
    if value < 1:
        raise ValueError(f"{name}={value} must be at least 1")
    return value


class RayBackend:
    """Executes on a Ray cluster; connects (or starts a local one) on first use.

    ``num_scorers`` None: one scoring actor per CPU (per GPU with ``use_gpu``) the cluster
    has when scoring starts. ``init_kwargs`` go to ``ray.init`` (e.g. ``num_cpus`` for a
    local cluster in tests).
    """

    def __init__(
        self,
        score_config: ScoreConfig | None = None,
        *,
        address: str | None = None,
        num_workers: int = 1,
        num_scorers: int | None = None,
        use_gpu: bool = False,
        storage_path: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.score_config = score_config or ScoreConfig()
        self.address = address
        self.num_workers = num_workers
        self.num_scorers = num_scorers
        self.use_gpu = use_gpu
        self.storage_path = storage_path
        self.init_kwargs = dict(init_kwargs or {})

    @classmethod
    def from_env(cls, score_config: ScoreConfig | None = None) -> RayBackend:
        scorers = os.environ.get("LABELWISE_RAY_SCORERS", "").strip()
        return cls(
            score_config,
            address=os.environ.get("RAY_ADDRESS") or None,
            num_workers=_env_int("LABELWISE_RAY_TRAIN_WORKERS", 1),
            num_scorers=_env_int("LABELWISE_RAY_SCORERS", 1) if scorers else None,
            use_gpu=os.environ.get("LABELWISE_RAY_USE_GPU", "0").strip() in {"1", "true"},
            storage_path=os.environ.get("LABELWISE_RAY_STORAGE") or None,
        )

    def _ray(self) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        return ray

    # -- scoring --------------------------------------------------------------

    def score_chunks(
        self,
        classifier: TextClassifier,
        chunks: Iterable[Chunk],
        *,
        progress: ProgressFn | None = None,
        total: int = 0,
    ) -> Iterator[ScoredChunk]:
        """Yield ``(ids, probs, embeddings)`` per chunk, in input order (see the module
        docstring for how work and memory are bounded)."""
        ray = self._ray()
        cfg = self.score_config
        resources = {"num_gpus": 1} if self.use_gpu else {"num_cpus": 1}
        n_actors = self.num_scorers or max(1, int(
            ray.cluster_resources().get("GPU" if self.use_gpu else "CPU", 1)
        ))
        payload = ray.put(
            pack_artifact(classifier) if isinstance(classifier, TextClassifier) else classifier
        )
        actor_cls = ray.remote(**resources)(_Scorer)
        actors = [actor_cls.remote(payload, cfg.batch_size, cfg.max_length)
                  for _ in range(n_actors)]
        in_flight: deque[tuple[Sequence[Any], Any]] = deque()
        done, turn = 0, 0

        def oldest() -> ScoredChunk:
            nonlocal done
            ids, ref = in_flight.popleft()
            probs, embeddings = ray.get(ref)
            done += len(ids)
            if progress is not None:
                progress("score", done, max(total, done))
            return ids, probs, embeddings

        try:
            for ids, texts in chunks:
                if len(ids) != len(texts):
                    raise ValueError(f"chunk has {len(ids)} ids but {len(texts)} texts")
                if len(texts) == 0:
                    continue
                in_flight.append((ids, actors[turn % n_actors].score.remote(list(texts))))
                turn += 1
                if len(in_flight) >= 2 * n_actors:
                    yield oldest()
            while in_flight:
                yield oldest()
        finally:
            for actor in actors:
                ray.kill(actor)

    # -- training ---------------------------------------------------------------

    def train(
        self,
        config: TrainConfig,
        labels: Sequence[str],
        texts: Sequence[str],
        y: Any,
        *,
        doc_ids: Sequence[Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> TextClassifier:
        """Fit a classifier: data-parallel under Ray Train when ``num_workers > 1`` and
        the mode is ``full``, else in this process exactly as ``LocalBackend.train``."""
        if self.num_workers <= 1 or config.mode != "full":
            if self.num_workers > 1:
                log.info("Ray Train runs mode 'full' only; training %r locally", config.mode)
            return LocalBackend(self.score_config).train(
                config, labels, texts, y, doc_ids=doc_ids, progress=progress
            )
        return self._train_data_parallel(config, labels, texts, y, doc_ids, progress)

    def _train_data_parallel(
        self,
        config: TrainConfig,
        labels: Sequence[str],
        texts: Sequence[str],
        y: Any,
        doc_ids: Sequence[Any] | None,
        progress: ProgressFn | None,
    ) -> TextClassifier:
        self._ray()
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        report: ProgressFn = progress or (lambda phase, step, total: None)
        shell = TextClassifier(config, labels)
        targets = shell._targets(y)
        if len(targets) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
        train_idx, val_idx = train_validation_split(
            targets, fraction=config.validation_fraction, seed=config.seed,
            min_examples=config.min_examples_for_validation,
        )
        report("train", 0, config.epochs)
        storage = self.storage_path or tempfile.mkdtemp(prefix="labelwise-ray-train-")
        trainer = TorchTrainer(
            _ddp_train_loop,
            train_loop_config={
                "config": config.to_dict(), "labels": list(labels),
                "texts": [texts[i] for i in train_idx], "targets": targets[train_idx],
                "val_texts": [texts[i] for i in val_idx], "val_targets": targets[val_idx],
            },
            scaling_config=ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu),
            run_config=RunConfig(storage_path=storage, name="labelwise-fit"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train returned no checkpoint: {result.error}")
        report("train", config.epochs, config.epochs)
        with result.checkpoint.as_directory() as folder:
            write_meta(folder, {
                "labels": list(labels),
                "label2id": {label: i for i, label in enumerate(labels)},
                "multi_label": config.multi_label,
                "config": config.to_dict(),
                "metrics": {},
                "thresholds": None,
                "data_fingerprint": "",
            })
            clf = TextClassifier.load(folder, device=config.device)
        # What fit() records after training, from the driver: the validation split's
        # metrics and (multi-label) the tuned thresholds.
        validation: dict[str, Any] | None = None
        if len(val_idx):
            val_probs = clf.predict_proba([texts[i] for i in val_idx])
            if config.multi_label:
                clf.thresholds_ = tune_thresholds(targets[val_idx], val_probs)
            validation = evaluate(targets[val_idx], val_probs, clf.labels,
                                  multi_label=config.multi_label, thresholds=clf.thresholds_)
        elif config.multi_label:
            clf.thresholds_ = np.full(len(labels), 0.5)
        clf.data_fingerprint_ = data_fingerprint(
            list(doc_ids) if doc_ids is not None else text_ids(texts),
            clf._label_names(targets),
        )
        clf.metrics_ = {
            "n_train": int(len(train_idx)), "n_validation": int(len(val_idx)),
            "validation": validation, "history": (result.metrics or {}).get("history", []),
            "fit_seconds": (result.metrics or {}).get("fit_seconds"),
            "device": f"ray x{self.num_workers}",
        }
        return clf


def _ddp_train_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the ``full`` fine-tuning of ``TextClassifier.fit`` on this
    rank's shard, gradients averaged by DDP; rank 0 reports the best epoch's weights (by
    the validation split) as a checkpoint.

    Every rank runs the same number of steps (shards are padded by wrapping around), since
    DDP's all-reduce waits for every rank at every step; for the same reason rank 0's
    early-stopping decision is broadcast to the others after each epoch.
    """
    import time

    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device, prepare_model
    from torch import nn
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from learner.ml.encoder import bucketed_batches, default_model_path, pad_batch
    from learner.ml.encoder import tokenize as tokenize_texts
    from learner.ml.train import (
        TextClassifier,
        class_weights,
        param_groups,
        pos_weights,
        seed_everything,
        warmup_linear_decay,
    )

    started = time.perf_counter()
    cfg = TrainConfig.from_dict(loop_config["config"])
    labels: list[str] = loop_config["labels"]
    texts: list[str] = loop_config["texts"]
    targets = np.asarray(loop_config["targets"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    seed_everything(cfg.seed)  # same seed on every rank: identical initial heads
    device = get_device()
    path = cfg.model_name_or_path or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenize_texts(texts, tokenizer, cfg.max_length)
    val_ids = tokenize_texts(loop_config["val_texts"], tokenizer, cfg.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    k = len(labels)
    loss_fn: nn.Module
    if cfg.multi_label:
        weight = torch.as_tensor(pos_weights(targets)) if cfg.class_weighting else None
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
        y = torch.as_tensor(targets, dtype=torch.float32)
    else:
        weight = torch.as_tensor(class_weights(targets, k)) if cfg.class_weighting else None
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        y = torch.as_tensor(targets, dtype=torch.long)
    loss_fn.to(device)
    val_y = torch.as_tensor(np.asarray(loop_config["val_targets"]), dtype=y.dtype)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=k, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=(
            "multi_label_classification" if cfg.multi_label else "single_label_classification"
        ),
    )
    # Groups from the bare model (DDP hides its config); DDP keeps the same parameters.
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    ddp = prepare_model(model)

    shard = np.arange(rank, len(ids), world)
    per_rank = math.ceil(len(ids) / world)
    if len(shard) < per_rank:
        shard = np.concatenate([shard, np.arange(per_rank - len(shard)) % len(ids)])
    steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_linear_decay(step, warmup_steps=warmup, total_steps=total),
    )
    history: list[dict[str, float]] = []
    # The validation split's score for early stopping, as TextClassifier.fit computes it.
    judge = TextClassifier(cfg, labels)
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    for epoch in range(cfg.epochs):
        ddp.train()
        running = 0.0
        lengths = [len(ids[i]) for i in shard]
        for batch_pos in bucketed_batches(lengths, cfg.batch_size, shuffle=True,
                                          seed=cfg.seed + epoch + 1000 * rank):
            rows = shard[batch_pos]
            batch = pad_batch([ids[i] for i in rows], pad_id, device)
            loss = loss_fn(ddp(**batch).logits, y[rows].to(device))
            loss.backward()
            nn.utils.clip_grad_norm_(ddp.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach())
        record = {"epoch": float(epoch), "train_loss": running / steps_per_epoch}
        stop = [False]
        if rank == 0 and val_ids:
            score, val_loss = judge._validation_score(
                model, val_ids, pad_id, val_y, np.arange(len(val_ids)), loss_fn, device)
            record.update(val_score=score, val_loss=val_loss)
            if best is None or (score, -val_loss) > best:
                best, stale = (score, -val_loss), 0
                best_state = {n: t.detach().to("cpu", copy=True)
                              for n, t in model.state_dict().items()}
            else:
                stale += 1
            stop[0] = stale >= cfg.early_stopping_patience
        history.append(record)
        if world > 1:
            dist.broadcast_object_list(stop, src=0)
        if stop[0]:
            break

    metrics = {"history": history, "fit_seconds": round(time.perf_counter() - started, 3)}
    if rank == 0:
        if best_state is not None:
            model.load_state_dict(best_state)
        with tempfile.TemporaryDirectory(prefix="labelwise-ckpt-") as tmp:
            model.eval()
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)
