"""The worker processes are quiet by default: no transformers load report, warnings or
progress bars; `--verbose` (or LABELWISE_VERBOSE=1) brings them back. Real transformers,
real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, subprocess_env
from tests.learner.ml.conftest import tiny_model_dir  # noqa: F401 - shared fixture

pytestmark = pytest.mark.django_db(transaction=True)

# Runs the learner command's own setup (`--once` on an empty queue), then loads a model
# the way a round does: the tiny BERT has no classification head, so transformers has
# missing keys to report.
SCRIPT = """
import sys
import django
django.setup()
from django.core.management import call_command
call_command("learner", "--once", *sys.argv[2:])
import transformers.utils.logging as hf_logging
print("verbosity", hf_logging.get_verbosity(), "bars", hf_logging.is_progress_bar_enabled())
from transformers import AutoModelForSequenceClassification
AutoModelForSequenceClassification.from_pretrained(sys.argv[1], num_labels=3)
"""


def run_learner_setup(model_dir: object, *flags: str, env: dict[str, str] | None = None
                      ) -> subprocess.CompletedProcess[str]:
    env = env or subprocess_env()
    # Whatever this test process inherited or set, the child starts from the defaults.
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(model_dir), *flags],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=True)


def test_learner_is_quiet_by_default(tiny_model_dir):  # noqa: F811
    env = subprocess_env()
    env.pop("LABELWISE_VERBOSE", None)
    result = run_learner_setup(tiny_model_dir, env=env)
    assert "verbosity 40 bars False" in result.stdout  # logging.ERROR, bars off
    assert "LOAD REPORT" not in result.stderr
    assert "Loading weights" not in result.stderr


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_learner_verbose_restores_reports_and_progress_bars(tiny_model_dir, how):  # noqa: F811
    env = subprocess_env()
    env.pop("LABELWISE_VERBOSE", None)
    flags: tuple[str, ...] = ("--verbose",)
    if how == "environment":
        env["LABELWISE_VERBOSE"] = "1"
        flags = ()
    result = run_learner_setup(tiny_model_dir, *flags, env=env)
    assert "verbosity 30 bars True" in result.stdout  # logging.WARNING, bars on
    assert "LOAD REPORT" in result.stderr
    assert "Loading weights" in result.stderr


# This process imported huggingface_hub under the quiet environment (config.console's
# defaults at startup): the hub's own bars then stay off and it says so; transformers' come
# back, and those are the ones a round prints.
@pytest.mark.filterwarnings("ignore:Cannot enable progress bars")
def test_console_configure_sets_and_restores_transformers_output() -> None:
    import transformers.utils.logging as hf_logging

    from config.console import console_configure

    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    saved = {k: os.environ.get(k) for k in ("TRANSFORMERS_VERBOSITY",
                                            "HF_HUB_DISABLE_PROGRESS_BARS", "LABELWISE_VERBOSE")}
    try:
        console_configure(verbose=False)
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not hf_logging.is_progress_bar_enabled()
        console_configure(verbose=True)
        assert hf_logging.get_verbosity() == hf_logging.WARNING
        assert hf_logging.is_progress_bar_enabled()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        hf_logging.set_verbosity(before[0])
        (hf_logging.enable_progress_bar if before[1] else hf_logging.disable_progress_bar)()


LOG_REQUESTS = """
import logging
import django
django.setup()
server = logging.getLogger("django.server")
server.info('"GET /p/1/learner/progress/ HTTP/1.1" 200 17', extra={"status_code": 200})
server.warning('"GET /missing HTTP/1.1" 404 179', extra={"status_code": 404})
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_development_server_logs_only_failed_requests_unless_verbose(verbose: bool) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("LABELWISE_VERBOSE", None)
    if verbose:
        env["LABELWISE_VERBOSE"] = "1"
    result = subprocess.run([sys.executable, "-c", LOG_REQUESTS], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    assert "GET /missing HTTP/1.1" in result.stderr
    assert ("GET /p/1/learner/progress/" in result.stderr) is verbose
