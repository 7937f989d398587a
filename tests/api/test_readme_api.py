"""The README's REST API section, run as a reader runs it: its shell block is read from
README.md and each command goes to bash with curl against a live server, with only the
placeholders a reader fills in replaced (the server's address, the project's, round's and
job's ids, the virtualenv's python). From an empty key ring to an unzipped model."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from learner.models import LearnerSettings
from learner.worker import Worker
from tests.api.conftest import fill_labelled
from tests.conftest import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

README = REPO_ROOT / "README.md"
WAIT_S = 180


def readme_api_section() -> str:
    text = README.read_text()
    return text.split("\n## The REST API\n", 1)[1].split("\n## ", 1)[0]


def readme_commands() -> list[str]:
    """The section's shell block, one command a line (continuation lines joined), then the
    curl commands its prose gives inline."""
    section = readme_api_section()
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's API section has no shell block"
    block, after = match.group(1), section[match.end():]
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line] + re.findall(r"`(curl [^`]+)`", after)


def rows(body: Any) -> list[dict]:
    """A list endpoint's items, paged ({"results": [...]}) or not."""
    return body["results"] if isinstance(body, dict) else body


class Reader:
    """Runs the README's commands in one folder, with what the reader has learnt so far
    (the project's id, the round's number, the export job's id) in place of the README's."""

    def __init__(self, workdir: Path, server: str, project_id: int) -> None:
        self.workdir = workdir
        self.server = server
        self.ids = {"projects": project_id}
        self.env = subprocess_env()

    def localise(self, command: str) -> str:
        command = command.replace(".venv/bin/python manage.py",
                                  f"{shlex.quote(sys.executable)} "
                                  f"{shlex.quote(str(REPO_ROOT / 'manage.py'))}")
        command = command.replace("http://127.0.0.1:8000", self.server)

        def own_id(match: re.Match[str]) -> str:
            kind = match.group(1)
            assert kind in self.ids, f"the README uses a {kind} id before showing where " \
                                     f"it comes from: {command}"
            return f"/{kind}/{self.ids[kind]}"

        return re.sub(r"/(projects|rounds|exports)/\d+(?=/)", own_id, command)

    def run(self, command: str) -> str:
        done = subprocess.run(["bash", "-c", self.localise(command)], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    def json(self, command: str) -> Any:
        out = self.run(command)
        try:
            return json.loads(out)
        except ValueError:
            pytest.fail(f"not JSON from {command!r}: {out[:500]}")

    def poll(self, command: str, until: tuple[str, ...]) -> dict:
        """The README says to poll: the same command until the status is final."""
        deadline = time.monotonic() + WAIT_S
        while True:
            body = self.json(command)
            # An error ({"detail": ..., "code": ...}) has no status: no use asking again.
            if body.get("status", until[0]) in until or time.monotonic() > deadline:
                return body
            time.sleep(1)


@pytest.fixture
def learner_running():  # type: ignore[no-untyped-def]
    """`python manage.py learner` (it builds exports too when no round waits), in a thread.
    Started by the test once it has queued its round: a learner that finds a project
    without any round queues a cold start of its own first."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start() -> None:
        worker = Worker(name="readme-learner", progress_interval=0.5)
        thread = threading.Thread(target=worker.run_forever,
                                  kwargs={"poll_seconds": 0.5, "stop": stop}, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=120)


def test_the_readme_api_section_takes_a_reader_from_a_key_to_an_unzipped_model(
    live_server, project, lead, tiny_model_name, settings, tmp_path, learner_running
):  # type: ignore[no-untyped-def]
    for tool in ("curl", "unzip"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's commands need {tool}")
    settings.DATA_DIR = tmp_path
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    fill_labelled(project)
    # A frozen encoder, a linear head, 32 tokens: the round takes seconds, the API is the
    # same as for a fine-tuned MiniLM.
    LearnerSettings.objects.update_or_create(project=project, defaults=dict(
        model_name=tiny_model_name, mode=LearnerSettings.Mode.HEAD, max_length=32,
        train_every_labels=0))
    workdir = tmp_path / "reader"
    workdir.mkdir()
    reader = Reader(workdir, live_server.url, project.pk)

    commands = readme_commands()
    setup = [c for c in commands if not c.startswith(("curl", "unzip"))]
    assert setup and "token_create lead" in setup[0], setup
    # The key, the header and the address, as the README's first lines leave them.
    values = reader.run("\n".join(setup) + '\nprintf "%s\\0" "$KEY" "$H" "$API"')
    key, header, api = values.split("\0")[:3]
    assert key and header == f"Authorization: Token {key}"
    assert api == f"{live_server.url}/api"
    reader.env.update(KEY=key, H=header, API=api)

    seen: list[str] = []
    for command in commands[len(setup):]:
        bare = re.sub(r"\s+#.*$", "", command)  # what the step is, without its comment
        if bare.startswith("unzip"):
            reader.run(command)
            folder = workdir / f"round-{reader.ids['rounds']}-hf-job{reader.ids['exports']}"
            assert "round-3-hf-job7/" in command  # the README names the folder so
            for file in ("model.safetensors", "model_card.json", "README.md", "config.json"):
                assert (folder / file).is_file(), (file, list(workdir.rglob("*")))
            seen.append("unzip")
        elif "-o model.zip" in bare:
            reader.run(command)
            assert (workdir / "model.zip").read_bytes()[:4] == b"PK\x03\x04"
            seen.append("download")
        elif "-o labels.jsonl" in bare:
            reader.run(command)
            lines = [json.loads(line) for line in
                    (workdir / "labels.jsonl").read_text().splitlines()]
            labelled = project.documents.filter(final_labels__isnull=False).count()
            assert len(lines) == labelled and all(line["label"] for line in lines)
            seen.append("labels")
        elif bare.endswith("$API/projects/"):
            body = reader.json(command)
            assert [p["id"] for p in rows(body)] == [project.pk], body
            seen.append("projects")
        elif bare.endswith("/rounds/") and "-X POST" in bare:
            body = reader.json(command)
            assert body["status"] == "queued", body
            reader.ids["rounds"] = body["number"]
            learner_running()
            seen.append("train")
        elif bare.endswith("/rounds/"):
            assert rows(reader.json(command)) == [], "no round before the reader's"
            seen.append("rounds")
        elif re.search(r"/rounds/\d+/$", bare):
            body = reader.poll(command, until=("done", "failed", "cancelled"))
            assert body["status"] == "done", body
            assert body["metrics"]["macro_f1"] is not None
            seen.append("round done")
        elif bare.endswith("/predict/"):
            body = reader.json(command)
            assert "predictions" in body, body  # a 409 when no round has a model yet
            assert body["round"] == reader.ids["rounds"], body
            assert len(body["predictions"]) == 1, body
            seen.append("predict")
        elif "/exports/" in bare and "-d" in bare:
            body = reader.json(command)
            assert body["status"] == "queued" and body["format"] == "hf", body
            reader.ids["exports"] = body["id"]
            seen.append("export")
        elif re.search(r"/exports/\d+/$", bare):
            body = reader.poll(command, until=("done", "failed"))
            assert body["status"] == "done", body
            assert body["download_url"].endswith(
                f"/exports/{reader.ids['exports']}/download/")
            seen.append("export done")
        else:
            pytest.fail(f"a README command this test does not check: {command}")
    assert seen == ["projects", "rounds", "train", "round done", "predict", "export",
                    "export done", "download", "unzip", "labels"]
