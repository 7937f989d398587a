"""20 simulated annotators against gunicorn on PostgreSQL while a training round runs.

A fresh PostgreSQL database gets a 100,000-document project (overlap 2 by default), a
lead, and N annotators with API tokens; gunicorn serves the real app on a free port on
127.0.0.1 and `manage.py learner` runs beside it (a tiny random BERT, so a round trains in
seconds and then scores the whole pool, which is the heavy part: ~40 s of database
writes). Each annotator thread repeats, until --duration or --max-items: POST
/api/projects/<pk>/next/ (the reserved document), think, POST /submit/ with a label (which
records the answer and reserves the next document), think. Then the database is checked:

- lost: a 2xx submit without its Annotation row;
- over-assigned: a document handed to more annotators than the project's overlap, or a
  document with more annotations, or slots taken, than the overlap.

Latencies are measured at the client (queueing in gunicorn included). The machine's load
average is printed before, during and after: on shared cores the figures move with it.

    python bench/load.py [--docs 100000] [--annotators 20] [--duration 60]
                         [--think-ms 300] [--workers 4] [--overlap 2] [--no-learner]

Targets: p95 under 50 ms, zero errors, zero lost, zero over-assigned.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._django import setup_django  # noqa: E402

HOST = "127.0.0.1"  # never anything else: this bench loads only the local machine
LABELS = ["business", "sport", "tech", "politics"]
WORDS = ["market", "match", "machine", "vote", "film", "rate", "goal", "chip", "law",
         "song", "bank", "team"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Annotator:
    username: str
    token: str
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (start, ms)
    submitted: list[tuple[int, str]] = field(default_factory=list)  # (document, label)
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False


def build(docs: int, annotators: int, overlap: int, labelled: int, model_dir: Path
          ) -> tuple[Any, list[Annotator]]:
    from django.contrib.auth import get_user_model

    from annotate import services
    from annotate.bulk import table_analyze
    from annotate.models import Document, text_hash
    from api.authentication import token_create
    from learner.models import LearnerSettings

    User = get_user_model()
    lead = User.objects.create_user("bench-lead", password="x")
    project = services.project_create(name="Load", created_by=lead, labels=LABELS,
                                      overlap=overlap, guidelines="# Load\n\nThe topic.")
    label_pks = list(project.labels.values_list("pk", flat=True))
    rng = random.Random(0)
    batch = []
    for i in range(docs):
        text = f"{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
        final = [label_pks[i % len(label_pks)]] if i < labelled else None
        # Seed labels for the first round, as if already answered by `overlap` people.
        batch.append(Document(project=project, text=text, text_hash=text_hash(text),
                              rand=rng.random(), final_labels=final,
                              n_annotations=overlap if final else 0,
                              slots_taken=overlap if final else 0))
        if len(batch) == 5000:
            Document.objects.bulk_create(batch)
            batch = []
    Document.objects.bulk_create(batch)
    table_analyze(Document)  # as documents_import does after a large import
    LearnerSettings.objects.create(project=project, model_name=model_dir.name, mode="full",
                                   epochs=1, max_length=32, batch_size=16,
                                   train_every_labels=300)
    people = []
    for i in range(annotators):
        name = f"annotator{i:02d}"
        services.membership_set(project=project, username=name, role="annotator",
                                create_password="bench-password-x")
        _, key = token_create(user=User.objects.get(username=name), name="load bench")
        people.append(Annotator(name, key))
    return project, people


def annotate_loop(person: Annotator, port: int, project_id: int, deadline: float,
                  max_items: int, think_s: float, seed: int) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Token {person.token}", "Content-Type": "application/json"}
    base = f"/api/projects/{project_id}"

    def post(path: str, body: dict[str, Any] | None, times: list[float]) -> Any:
        payload = json.dumps(body or {})
        start = time.perf_counter()
        try:
            conn.request("POST", base + path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            person.errors.append(f"{path}: {type(exc).__name__}: {exc}")
            return None
        times.append((time.perf_counter() - start) * 1000)
        person.timeline.append((start, times[-1]))
        if not 200 <= response.status < 300:
            person.errors.append(f"{path}: HTTP {response.status} {data[:200]!r}")
            return None
        return json.loads(data)

    def pause() -> None:
        time.sleep(think_s * rng.uniform(0.5, 1.5))

    for _ in range(max_items):
        if time.monotonic() >= deadline:
            break
        handed = post("/next/", None, person.next_ms)
        if handed is None:
            pause()
            continue
        if handed["document"] is None:
            person.exhausted = True
            break
        pause()
        doc_id, label = handed["document"]["id"], rng.choice(LABELS)
        if post("/submit/", {"document": doc_id, "labels": [label]}, person.submit_ms):
            person.submitted.append((doc_id, label))
        pause()
    conn.close()


def check_database(project: Any, people: list[Annotator]) -> dict[str, int]:
    from django.db.models import Count

    from annotate.models import Annotation, Assignment, Document

    lost = 0
    for person in people:
        stored = set(Annotation.objects.filter(document__project=project,
                                               annotator__username=person.username)
                     .values_list("document_id", flat=True))
        lost += sum(1 for doc_id, _ in person.submitted if doc_id not in stored)
    overlap = project.overlap
    handed = (Assignment.objects.filter(project=project).values("document")
              .annotate(n=Count("user", distinct=True)).filter(n__gt=overlap).count())
    answered = (Annotation.objects.filter(document__project=project).values("document")
                .annotate(n=Count("id")).filter(n__gt=overlap).count())
    slots = Document.objects.filter(project=project, slots_taken__gt=overlap).count()
    return {"lost": lost, "over_assigned": handed, "over_annotated": answered,
            "over_slots": slots,
            "annotations": Annotation.objects.filter(document__project=project).count()}


def wait_http(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on {HOST}:{port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def report(label: str, values: list[float]) -> str:
    return (f"  {label:<8} n={len(values):>6}  p50 {statistics.median(values):6.1f} ms  "
            f"p95 {percentile(values, 95):6.1f} ms  p99 {percentile(values, 99):6.1f} ms  "
            f"max {max(values):7.1f} ms") if values else f"  {label:<8} no requests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-items", type=int, default=10_000, help="per annotator")
    parser.add_argument("--think-ms", type=float, default=300.0,
                        help="mean pause between requests (uniform 0.5x-1.5x)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--labelled", type=int, default=200, help="seed labels")
    parser.add_argument("--no-learner", action="store_true",
                        help="no concurrent round (the baseline)")
    args = parser.parse_args()

    started = time.perf_counter()
    setup_django("postgres", name="labelwise_bench_load")
    os.environ["ALLOWED_HOSTS"] = f"{HOST},localhost"
    from bench.pool_1m import tiny_model
    from learner import services as learner_services
    from learner.models import Round

    # Rounds load base models by name from the models directory (learner.base_models); the
    # web and learner processes started below inherit it through the environment.
    models = Path(tempfile.mkdtemp(prefix="labelwise-load-"))
    os.environ["LABELWISE_MODELS_DIR"] = str(models)
    from django.conf import settings as django_settings

    django_settings.LABELWISE_MODELS_DIR = models
    model_dir = tiny_model(models / "tiny-bert")
    project, people = build(args.docs, args.annotators, args.overlap, args.labelled, model_dir)
    print(f"postgresql: {args.docs:,}-document project (overlap {args.overlap}), "
          f"{args.annotators} annotators, think {args.think_ms:.0f} ms, gunicorn "
          f"{args.workers} workers; set up in {time.perf_counter() - started:.0f} s", flush=True)

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    logs = Path(os.environ["LABELWISE_DATA_DIR"])
    web = learner = None
    try:
        with (logs / "gunicorn.log").open("wb") as web_log:
            web = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind",
                 f"{HOST}:{port}", "--workers", str(args.workers), "--timeout", "60"],
                cwd=REPO, env=env, stdout=web_log, stderr=subprocess.STDOUT)
        wait_http(port, 60)
        if not args.no_learner:
            learner_services.round_request(project=project)
            # One torch thread: the learner shares the machine with the web app on purpose
            # (the worst case), but must not take every core.
            with (logs / "learner.log").open("wb") as learner_log:
                learner = subprocess.Popen(
                    [sys.executable, "manage.py", "learner", "--poll", "1"], cwd=REPO,
                    env={**env, "OMP_NUM_THREADS": "1"}, stdout=learner_log,
                    stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while not Round.objects.filter(project=project, status="running").exists():
                if time.monotonic() > deadline or learner.poll() is not None:
                    raise RuntimeError(f"no round started; see {logs / 'learner.log'}")
                time.sleep(0.5)
        load_before = os.getloadavg()[0]
        t0 = time.monotonic()
        deadline = t0 + args.duration
        threads = [
            threading.Thread(target=annotate_loop, args=(
                person, port, project.pk, deadline, args.max_items, args.think_ms / 1000, i))
            for i, person in enumerate(people)
        ]
        for thread in threads:
            thread.start()
        # The round's phase once a second, to line up with the latency windows.
        phases: list[tuple[float, str]] = []
        load_during = 0.0
        while any(thread.is_alive() for thread in threads):
            current = (Round.objects.filter(project=project).order_by("-number")
                       .values_list("status", "phase").first())
            phases.append((time.perf_counter(), "/".join(current) if current else "-"))
            if not load_during and time.monotonic() - t0 >= min(args.duration / 2, 30):
                load_during = os.getloadavg()[0]
            time.sleep(1.0)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - t0
        load_after = os.getloadavg()[0]
        rounds = list(Round.objects.filter(project=project).order_by("number")
                      .values_list("number", "status", "phase"))
    finally:
        stop(learner, 120)
        stop(web)

    next_ms = [t for p in people for t in p.next_ms]
    submit_ms = [t for p in people for t in p.submit_ms]
    errors = [e for p in people for e in p.errors]
    submits = sum(len(p.submitted) for p in people)
    checks = check_database(project, people)
    print(f"{elapsed:.0f} s of load: {submits} labels submitted "
          f"({submits / elapsed:.1f}/s, {(len(next_ms) + len(submit_ms)) / elapsed:.1f} "
          f"requests/s); load average {load_before:.1f} before, {load_during:.1f} during, "
          f"{load_after:.1f} after, on {os.cpu_count()} cores")
    print(report("next", next_ms))
    print(report("submit", submit_ms))
    # Latency over time, next and submit together: shows which phase of the round (or
    # what else on the machine) the slow requests coincide with.
    timeline = sorted(event for p in people for event in p.timeline)
    if timeline:
        first, window = timeline[0][0], 10.0
        buckets: dict[int, list[float]] = {}
        for at, ms in timeline:
            buckets.setdefault(int((at - first) // window), []).append(ms)
        print("  p95 by 10 s window (the round's phase at its start):")
        for index, values in sorted(buckets.items()):
            start = first + index * window
            phase = next((name for at, name in phases if at >= start), "-")
            print(f"    {index * window:4.0f} s  {percentile(values, 95):6.1f} ms  "
                  f"n={len(values):<5} {phase}")
    print(f"  rounds meanwhile: {rounds}")
    print(f"  errors {len(errors)}; lost {checks['lost']}; over-assigned "
          f"{checks['over_assigned']} (annotations past overlap {checks['over_annotated']}, "
          f"slots past overlap {checks['over_slots']}); {checks['annotations']} annotations "
          "in the database")
    for error in errors[:5]:
        print(f"    {error}")
    p95 = max(percentile(next_ms, 95), percentile(submit_ms, 95))
    ok = p95 < 50 and not errors and not any(
        checks[k] for k in ("lost", "over_assigned", "over_annotated", "over_slots"))
    print(f"  targets (p95 < 50 ms, 0 errors, 0 lost, 0 over-assigned): "
          f"{'met' if ok else 'MISSED'} (worst p95 {p95:.1f} ms)")
    print(f"  gunicorn and learner logs: {logs}")


if __name__ == "__main__":
    main()
