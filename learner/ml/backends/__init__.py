"""Where training and pool scoring run: in this process, or on a Ray cluster.

``get_backend()`` picks one from the environment: ``LEARNER_BACKEND=local`` (the
default) or ``ray`` (``RAY_ADDRESS`` and the ``LABELWISE_RAY_*`` variables in
``learner/ml/backends/ray.py``). Ray is imported only when it is asked for, so the local
backend needs no Ray installed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from learner.ml.backends.local import LocalBackend
from learner.ml.config import ScoreConfig

if TYPE_CHECKING:
    from learner.ml.backends.ray import RayBackend

BACKENDS = ("local", "ray")


def get_backend(
    score_config: ScoreConfig | None = None, name: str | None = None
) -> LocalBackend | RayBackend:
    """The backend named by ``name``, else by ``$LEARNER_BACKEND`` (default ``local``)."""
    chosen = (name or os.environ.get("LEARNER_BACKEND", "") or "local").strip().lower()
    if chosen == "local":
        return LocalBackend(score_config)
    if chosen == "ray":
        from learner.ml.backends.ray import RayBackend

        return RayBackend.from_env(score_config)
    raise ValueError(f"LEARNER_BACKEND={chosen!r}: choose one of {', '.join(BACKENDS)}")
