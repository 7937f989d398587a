"""Latency and throughput of the predictions endpoint, PyTorch against ONNX int8.

Sets up a throwaway Labelwise (its own SQLite database in a temporary folder), imports a
few hundred real labelled texts, trains a classifier on the real all-MiniLM-L6-v2 in one
round (mode auto: the linear head, and full fine-tuning when it wins on validation), or
uses a saved model folder given with --model, exports that round's model to
int8 ONNX with the export job, then times POST /api/projects/<id>/predict/ through the
whole Django stack in process (token auth, validation, the model cache, JSON):

- one text per request: p50 / p95 latency, runtime "pytorch" and "onnx-int8";
- 64 texts per request: texts per second, both runtimes.

Baselines, same run: the request as it would be without the model cache (the model is
loaded from disk for every request), and SetFit on the exported "hf" folder
(``SetFitModel.from_pretrained(folder).predict_proba``, no web stack at all).

    .venv/bin/python bench/predict.py                     # 300 texts, MiniLM, ~2 min
    .venv/bin/python bench/predict.py --model var/artifacts/project-1/round-3

Data: bbc_news from the shared datasets, or --data (JSON Lines with text and label).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATASETS = Path(os.environ.get("LABELWISE_DATASETS", REPO.parent / "shared" / "datasets"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATASETS / "bbc_news.jsonl")
    parser.add_argument("--n", type=int, default=300, help="labelled texts to train on")
    parser.add_argument("--model", type=Path, help="a saved Labelwise model folder "
                                                   "(labelwise.json inside): skip training")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--single", type=int, default=100, help="single-text requests")
    parser.add_argument("--batches", type=int, default=10, help="64-text requests")
    parser.add_argument("--uncached", type=int, default=5, help="baseline requests")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="labelwise-bench-predict-"))
    os.environ["LABELWISE_DATA_DIR"] = str(workdir)
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    import torch
    from django.core.management import call_command
    from django.test import Client

    if args.threads:
        torch.set_num_threads(args.threads)
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    from annotate import services as annotate_services
    from annotate.models import Document, text_hash
    from api.authentication import token_create
    from learner import inference
    from learner import services as learner_services
    from learner.export import export_job_request, export_jobs_run_once
    from learner.models import LearnerSettings, Round

    rows = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    rng = random.Random(0)
    rng.shuffle(rows)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    if args.model:
        labels = json.loads((args.model / "labelwise.json").read_text())["labels"]
    else:
        labels = sorted({str(r["label"]) for r in rows})
    project = annotate_services.project_create(name="bench", created_by=user, labels=labels)
    ids = {label.name: label.pk for label in project.labels.all()}
    chosen = [r for r in rows if str(r["label"]) in ids][: args.n]
    Document.objects.bulk_create(
        Document(project=project, text=r["text"], text_hash=text_hash(r["text"]),
                 rand=rng.random(), final_labels=[ids[str(r["label"])]], n_annotations=1,
                 slots_taken=1)
        for r in chosen
    )
    annotate_services.holdout_reserve(project=project, fraction=0.2)
    started = time.perf_counter()
    if args.model:
        round = Round.objects.create(project=project, number=1, status=Round.Status.DONE,
                                     artifact_path=str(args.model.resolve()))
        how = f"model {args.model}"
    else:
        from learner.worker import Worker

        LearnerSettings.objects.create(project=project, epochs=args.epochs,
                                       max_length=args.max_length, train_every_labels=0)
        learner_services.round_request(project=project)
        Worker(name="bench").run_once()
        round = Round.objects.get(project=project)
        assert round.status == Round.Status.DONE, round.traceback
        how = (f"all-MiniLM-L6-v2 trained on {round.n_train} {args.data.stem} texts "
               f"(mode auto, kept rung {round.fit.get('rung', '?')}), {args.epochs} epoch(s), "
               f"holdout accuracy {round.metrics['accuracy']:.3f}")
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    for fmt in ("hf", "onnx-int8"):
        export_job_request(round=round, fmt=fmt)
        export_jobs_run_once(worker="bench")
    export_s = time.perf_counter() - started

    client = Client(HTTP_HOST="127.0.0.1")
    _token, key = token_create(user=user, name="bench")
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    texts = [r["text"] for r in rows[args.n: args.n + 2000]] or [r["text"] for r in rows]
    url = f"/api/projects/{project.pk}/predict/"

    def post(batch: list[str], runtime: str) -> None:
        response = client.post(url, {"texts": batch, "round": round.number,
                                     "runtime": runtime},
                               content_type="application/json", **headers)
        assert response.status_code == 200, response.content[:500]

    print(f"Labelwise predictions endpoint ({how}); torch threads {torch.get_num_threads()}")
    print(f"setup: train {train_s:.0f} s, export hf + onnx-int8 {export_s:.0f} s")
    print(f"{'':38} {'p50 ms':>8} {'p95 ms':>8} {'texts/s (64)':>13}")
    results = {}
    for runtime in ("pytorch", "onnx-int8"):
        post(texts[:1], runtime)  # load into the cache: the first request pays the load
        single = timed(lambda r=runtime: post([rng.choice(texts)], r), args.single)
        batch_s = timed(lambda r=runtime: post(rng.sample(texts, 64), r), args.batches)
        results[runtime] = (single, 64 / statistics.median(batch_s))
        print(f"{'endpoint, ' + runtime:38} {1000 * percentile(single, 0.5):8.1f} "
              f"{1000 * percentile(single, 0.95):8.1f} {results[runtime][1]:13.0f}")

    # Baseline 1: the endpoint without the model cache, i.e. a load per request.
    real_get = inference.models.get

    def uncached(round, runtime="pytorch"):  # type: ignore[no-untyped-def]
        return inference._load(inference._source(round, runtime), runtime)

    inference.models.get = uncached  # type: ignore[method-assign]
    try:
        cold = timed(lambda: post([rng.choice(texts)], "pytorch"), args.uncached)
    finally:
        inference.models.get = real_get  # type: ignore[method-assign]
    print(f"{'baseline: load per request, pytorch':38} {1000 * percentile(cold, 0.5):8.1f} "
          f"{1000 * percentile(cold, 0.95):8.1f} {'':>13}")

    # Baseline 2: the exported "hf" folder loaded by SetFit, no web stack.
    from setfit import SetFitModel

    from learner.models import ExportJob

    hf_zip = Path(ExportJob.objects.get(round=round, format="hf").path)
    with zipfile.ZipFile(hf_zip) as zipped:
        zipped.extractall(workdir / "hf")
    (folder,) = [p for p in (workdir / "hf").iterdir() if p.is_dir()]
    setfit_model = SetFitModel.from_pretrained(str(folder), local_files_only=True,
                                               device="cpu")

    def setfit_proba(batch: list[str]) -> None:
        setfit_model.predict_proba(batch, batch_size=64, as_numpy=True,
                                   show_progress_bar=False)

    setfit_proba(texts[:1])
    plain = timed(lambda: setfit_proba([rng.choice(texts)]), args.single)
    plain_batch = timed(lambda: setfit_proba(rng.sample(texts, 64)), args.batches)
    print(f"{'baseline: SetFit on the hf export':38} {1000 * percentile(plain, 0.5):8.1f} "
          f"{1000 * percentile(plain, 0.95):8.1f} {64 / statistics.median(plain_batch):13.0f}")
    int8_zip = Path(ExportJob.objects.get(round=round, format="onnx-int8").path)
    with zipfile.ZipFile(int8_zip) as zipped:
        card = json.loads(zipped.read(f"{int8_zip.stem}/model_card.json"))
    onnx = card["onnx"] or {}
    speedup = results["onnx-int8"][1] / results["pytorch"][1]
    cache_gain = percentile(cold, 0.5) / percentile(results["pytorch"][0], 0.5)
    print(f"onnx-int8: {speedup:.2f}x PyTorch's batch throughput; file "
          f"{onnx.get('file_size_bytes', 0) / 1e6:.1f} MB; holdout accuracy change "
          f"{onnx.get('accuracy_change')} (n={onnx.get('n')}). The model cache makes a "
          f"single-text request {cache_gain:.0f}x faster than loading per request.")

if __name__ == "__main__":
    main()
