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

Training: the ladder (``TextClassifier.fit``) runs in the driver; with ``num_workers > 1``
its ``full`` rung (mode ``full``, or ``auto`` when the ladder climbs to it) runs under Ray
Train's ``TorchTrainer``, one DDP process per worker, each on its own shard of the
training split, through the same steps as the local fit (``build_model``, ``build_loss``,
``train_epoch``, ``forward_logits``, ``score_logits`` in ``learner.ml.train``). After each
epoch rank 0 scores the validation split and keeps the best epoch's weights;
``early_stopping_patience`` epochs without improvement stop every rank (the decision is
broadcast, since DDP needs all ranks to take the same steps). Rank 0's best weights come
back to the driver, which calibrates and saves as the local fit does. With a few hundred
labels per round the local fit is usually as fast, so ``num_workers`` defaults to 1.

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

from learner.ml.backends.local import Chunk, ScoredChunk
from learner.ml.config import ScoreConfig, TrainConfig
from learner.ml.model import PooledClassifier
from learner.ml.train import FitData, ProgressFn, TextClassifier, fine_tune

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
        self._trained_rungs: list[str] = []  # the rungs the last train() ran on Ray Train

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
        warm_start: str | None = None,
    ) -> TextClassifier:
        """Fit a classifier as ``LocalBackend.train`` does; with ``num_workers > 1`` the
        ``full`` rung trains data-parallel under Ray Train."""
        trainer = self._data_parallel if self.num_workers > 1 else None
        self._trained_rungs = []
        clf = TextClassifier(config, labels).fit(
            texts, y, doc_ids=doc_ids, progress=progress, encoder_trainer=trainer,
            warm_start=warm_start)
        if clf.metrics_["ladder"]["pick"] in self._trained_rungs:
            # The kept model came from the Ray Train workers, not from this process.
            clf.metrics_["device"] = f"ray x{self.num_workers}"
        return clf

    def _data_parallel(
        self,
        model: PooledClassifier,
        rung: str,
        *,
        data: FitData,
        config: TrainConfig,
        labels: Sequence[str],
        report: ProgressFn,
        warm: bool = False,
    ) -> tuple[PooledClassifier, list[dict[str, float]]]:
        if rung != "full":
            log.info("Ray Train runs the full rung only; training %r locally", rung)
            return fine_tune(model, rung, data=data, config=config, labels=labels,
                             report=report, warm=warm)
        self._ray()
        import torch
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        report("train", 0, 1)
        storage = self.storage_path or tempfile.mkdtemp(prefix="labelwise-ray-train-")
        trainer = TorchTrainer(
            _ddp_train_loop,
            train_loop_config={
                "config": config.to_dict(), "labels": list(labels),
                "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "ids": data.ids, "targets": data.targets, "train_idx": data.train_idx,
                "val_idx": data.val_idx, "pad_id": data.pad_id, "warm": warm,
            },
            scaling_config=ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu),
            run_config=RunConfig(storage_path=storage, name="labelwise-fit"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train returned no checkpoint: {result.error}")
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu")
        model.load_state_dict(state)
        model.eval()
        report("train", 1, 1)
        self._trained_rungs.append(rung)
        return model, list((result.metrics or {}).get("history", []))


STATE_FILE = "state.pt"


def _ddp_train_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the ``full`` rung of ``TextClassifier.fit`` on this rank's
    shard of the training split, gradients averaged by DDP, through the local fit's own
    steps; rank 0 reports the best epoch's weights (by the validation split).

    Every rank runs the same number of steps (shards are padded by wrapping around), since
    DDP's all-reduce waits for every rank at every step; for the same reason rank 0's
    early-stopping decision is broadcast to the others after each epoch.
    """
    import time

    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device, prepare_model

    from learner.ml.train import (
        build_loss,
        build_model,
        forward_logits,
        param_groups,
        plan_epochs,
        score_logits,
        seed_everything,
        train_epoch,
    )

    started = time.perf_counter()
    cfg = TrainConfig.from_dict(loop_config["config"])
    labels: list[str] = loop_config["labels"]
    ids: list[list[int]] = loop_config["ids"]
    targets = np.asarray(loop_config["targets"])
    train_idx = np.asarray(loop_config["train_idx"], dtype=np.int64)
    val_idx = np.asarray(loop_config["val_idx"], dtype=np.int64)
    pad_id = int(loop_config["pad_id"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    seed_everything(cfg.seed)
    device = get_device()
    model, _ = build_model(cfg, len(labels))
    model.load_state_dict(loop_config["state"])  # the driver's start: the probe's head
    loss_fn = build_loss(cfg, targets[train_idx], len(labels)).to(device)
    y = cfg.task.tensor(targets)
    # Groups from the bare model (DDP hides its attributes); DDP keeps the same parameters.
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    ddp = prepare_model(model)

    shard = train_idx[rank::world]
    per_rank = math.ceil(len(train_idx) / world)
    if len(shard) < per_rank:
        shard = np.concatenate([shard, train_idx[: per_rank - len(shard)]])
    warm = bool(loop_config.get("warm"))
    epochs, _, total = plan_epochs(per_rank, cfg, warm=warm)
    min_steps = min(total, int(cfg.min_steps * (cfg.warm_start_step_fraction if warm else 1)))
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    val_ids = [ids[i] for i in val_idx]
    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stale = step = 0

    def validate() -> tuple[float, float]:
        logits, _ = forward_logits(model, val_ids, pad_id=pad_id,
                                   batch_size=cfg.eval_batch_size, features=False)
        return score_logits(targets[val_idx], logits, labels, task=cfg.task)

    def keep_best(score: float, loss: float) -> bool:
        nonlocal best, best_state
        if best is None or (score, -loss) > best:
            best = (score, -loss)
            best_state = {n: t.detach().to("cpu", copy=True)
                          for n, t in model.state_dict().items()}
            return True
        return False

    if rank == 0 and len(val_idx) and cfg.lp_init:
        keep_best(*validate())
    for epoch in range(epochs):
        if step >= total:
            break
        train_loss, taken = train_epoch(
            ddp, optimizer, scheduler, ids, y, shard, loss_fn, pad_id=pad_id,
            batch_size=cfg.batch_size, max_grad_norm=cfg.max_grad_norm,
            seed=cfg.seed + epoch + 1000 * rank, steps_left=total - step,
        )
        step += taken
        record = {"epoch": float(epoch), "train_loss": train_loss, "steps": float(step)}
        stop = [False]
        if rank == 0 and len(val_idx):
            score, val_loss = validate()
            kept = keep_best(score, val_loss)
            record.update(val_score=score, val_loss=val_loss, kept=float(kept))
            stale = 0 if kept else stale + 1
            stop[0] = stale >= cfg.early_stopping_patience and step >= min_steps
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
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                       Path(tmp) / STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)
