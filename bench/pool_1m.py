"""Wall time and peak memory per phase for a million-document pool: generate, import,
score (local backend, then Ray), fast refresh.

Each phase is measured on a fresh PostgreSQL (or SQLite) database with a tiny random BERT
(2 layers, hidden 32, the real MiniLM tokenizer), so the figures are the streaming
machinery's, not the encoder's: how memory behaves as the pool grows. Peak memory is
sampled every 20 ms from /proc: this process's RSS and its growth over the phase, the
growth of its heap alone (RssAnon: RSS counts the memory-mapped embedding cache's pages
too, which the kernel can drop), and for the Ray phase the whole
process tree (raylet, GCS and the scoring actors are children of this process when Ray
starts a local cluster). Run it at two sizes: a phase whose peak grows with --docs holds
the pool in memory.

    python bench/pool_1m.py [--docs 1000000] [--database postgres|sqlite]
                            [--backends local,ray] [--labelled 600] [--ray-cpus 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._django import setup_django  # noqa: E402

LABELS = ["business", "sport", "tech", "politics"]
WORDS = {
    "business": ["market", "shares", "profit", "bank", "economy", "trade", "rate"],
    "sport": ["match", "goal", "team", "coach", "league", "cup", "score"],
    "tech": ["software", "chip", "internet", "phone", "computer", "data", "robot"],
    "politics": ["vote", "minister", "law", "party", "election", "senate", "policy"],
}
FILLER = ["the", "a", "on", "with", "after", "new", "big", "week", "today", "report"]


def anon_mb() -> float:
    """This process's anonymous (heap) memory: RSS less file-backed pages, such as the
    memory-mapped embedding cache, which the kernel can write back and drop."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | None = None, *, tree: bool = False) -> float:
    import psutil

    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)] if tree else [proc]
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):  # a Ray worker that just exited
            total += p.memory_info().rss
    return total / 2**20


class Phase:
    """Wall time and peak RSS (this process, and its process tree) over a block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peak = self.peak_tree = self.start = self.peak_anon = self.start_anon = 0.0
        self.seconds = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())
            self.peak_anon = max(self.peak_anon, anon_mb())
            self.peak_tree = max(self.peak_tree, rss_mb(tree=True))

    @contextmanager
    def measure(self) -> Iterator[Phase]:
        self.start = self.peak = rss_mb()
        self.start_anon = self.peak_anon = anon_mb()
        self.peak_tree = rss_mb(tree=True)
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds = time.perf_counter() - t0
            self._stop.set()
            sampler.join()
            self.peak = max(self.peak, rss_mb())

    def line(self, extra: str = "") -> str:
        return (f"  {self.name:<22} {self.seconds:8.1f} s   peak RSS {self.peak:7.0f} MB "
                f"(+{self.peak - self.start:5.0f}; heap +{self.peak_anon - self.start_anon:5.0f})"
                f"   process tree {self.peak_tree:7.0f} MB  {extra}")


def generate(path: Path, n_docs: int, n_labelled: int) -> None:
    """JSON Lines: short texts (8-20 words), the first `n_labelled` with a gold label."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_docs):
            label = LABELS[i % len(LABELS)]
            words = [rng.choice(WORDS[label] if rng.random() < 0.4 else FILLER)
                     for _ in range(rng.randint(8, 20))]
            row: dict[str, Any] = {"text": f"{i} " + " ".join(words)}
            if i < n_labelled:
                row["label"] = label
            out.write(json.dumps(row) + "\n")


def tiny_model(folder: Path) -> Path:
    """The tests' tiny BERT: 2 layers, hidden 32, random weights, the real tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from learner.ml.encoder import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    torch.manual_seed(1234)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def score_with(backend: str, project: Any, classifier: Any, label_ids: list[int],
               chunk_size: int) -> tuple[Any, dict[str, int]]:
    from learner import services as learner_services
    from learner.ml.config import ScoreConfig
    from learner.models import Round
    from learner.pipeline import artifact_dir, score_pool

    os.environ["LEARNER_BACKEND"] = backend
    round = learner_services.round_request(project=project)
    Round.objects.filter(pk=round.pk).update(status=Round.Status.RUNNING)
    round.refresh_from_db()
    done = score_pool(round, classifier, label_ids=label_ids, progress=lambda *a, **k: None,
                      score_config=ScoreConfig(chunk_size=chunk_size))
    learner_services.round_finish(round=round, n_train=0, artifact_path=str(artifact_dir(round)))
    return round, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--labelled", type=int, default=600)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--ray-cpus", type=int, default=2,
                        help="CPUs of the local Ray cluster (RAY_ADDRESS unset)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)  # the scorer's own setting on shared 2-core machines
    setup_django(args.database, name="labelwise_bench_pool")
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotate import services
    from annotate.io.importer import documents_import
    from annotate.models import Document
    from learner.ml.config import TrainConfig
    from learner.ml.train import TextClassifier
    from learner.refresh import refresh_project

    work = Path(tempfile.mkdtemp(prefix="labelwise-pool-"))
    print(f"{connection.vendor}: {args.docs:,} documents ({args.labelled} labelled), "
          f"chunks of {args.chunk_size}, torch threads 1, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    report: list[str] = []

    def run(name: str, fn: Callable[[], Any], extra: Callable[[Any], str] = str) -> Any:
        with Phase(name).measure() as phase:
            value = fn()
        report.append(phase.line(extra(value)))
        print(report[-1], flush=True)
        return value

    data = work / "pool.jsonl"
    run("generate", lambda: generate(data, args.docs, args.labelled),
        lambda _: f"{data.stat().st_size / 2**20:.0f} MB file")
    lead = get_user_model().objects.create_user("bench-lead", password="x")
    project = services.project_create(name="Pool", created_by=lead, labels=LABELS)

    def do_import() -> Any:
        with data.open("rb") as handle:
            return documents_import(project=project, file=handle, fmt="jsonl", user=lead)

    imported = run("import", do_import, lambda r: f"{r.created:,} docs, {r.labelled} labelled")
    assert imported.created == args.docs, imported

    labels = {label.pk: label.name for label in project.labels.all()}
    label_ids = list(labels)
    labelled = list(Document.objects.filter(project=project, final_labels__isnull=False)
                    .values_list("text", "final_labels"))
    config = TrainConfig(model_name_or_path=str(tiny_model(work / "tiny-bert")), mode="head",
                         max_length=32)
    classifier = run("fit (head, tiny BERT)", lambda: TextClassifier(config, LABELS).fit(
        [t for t, _ in labelled], [LABELS.index(labels[f[0]]) for _, f in labelled]),
        lambda c: f"{c.metrics_['n_train']} training texts")

    for backend in backends:
        if backend == "ray":
            import ray

            if not ray.is_initialized():
                temp = tempfile.mkdtemp(prefix="lw-ray-", dir="/tmp")
                init = {} if os.environ.get("RAY_ADDRESS") else {
                    "num_cpus": args.ray_cpus, "include_dashboard": False, "_temp_dir": temp}
                run("ray.init", lambda i=init: ray.init(log_to_driver=False, **i), lambda _: "")
        _, done = run(f"score ({backend})", lambda b=backend: score_with(
            b, project, classifier, label_ids, args.chunk_size),
            lambda r: f"{r[1]['scored']:,} scored, {r[1]['scored_labelled']} labelled")
        timings: dict[str, float] = {}
        run(f"fast refresh ({backend})", lambda t=timings: refresh_project(project, timings=t),
            lambda n, t=timings: f"{n:,} rows; " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))

    print(f"\nsummary, {args.docs:,} documents on {connection.vendor}:")
    print("\n".join(report))
    if "ray" in backends:
        import ray

        ray.shutdown()
    # The pool file, the tiny model and the rounds' embedding caches (GBs at 1M documents).
    for folder in (work, Path(os.environ["LABELWISE_DATA_DIR"])):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
