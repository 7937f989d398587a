"""What the worker processes print: their own log lines, and nothing of the libraries'
chatter unless asked.

transformers prints a load report (missing and unexpected keys) and a "Loading weights"
progress bar every time a round loads its model, and huggingface_hub adds bars of its own;
in a demo's console that buries the worker's lines. Quiet is the default; `--verbose` on
the commands, or LABELWISE_VERBOSE=1 in the environment, brings all of it back.
"""

from __future__ import annotations

import os

VERBOSE_ENV = "LABELWISE_VERBOSE"


def verbose_requested(flag: bool = False) -> bool:
    """True when the command's `--verbose` flag is set or LABELWISE_VERBOSE is true."""
    return flag or os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def console_defaults() -> None:
    """Quiet defaults for libraries not imported yet, read from the environment when they
    are: cheap (imports nothing), so every process can call it at startup. Child processes
    (Ray workers, the demo's workers) inherit them. Settings made before are kept."""
    if verbose_requested():
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def console_configure(*, verbose: bool) -> None:
    """Sets transformers' and huggingface_hub's output for this process and its children:
    warnings and progress bars when `verbose`, errors only and no bars otherwise. Imports
    transformers (about two seconds), so only the worker commands call it."""
    import huggingface_hub.utils as hf_hub_utils
    import transformers.utils.logging as hf_logging

    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "warning"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0"
        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
        hf_hub_utils.enable_progress_bars()
    else:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        hf_hub_utils.disable_progress_bars()
