"""Optional experiment logging: ``TrainConfig(log_to="wandb")`` sends the training log to Weights & Biases.

Each entry of the training log (loss, learning rate, curriculum, evaluations) goes
to ``wandb.log`` at its step. With an output folder the wandb run id is kept in
``out_dir/wandb_run_id``, so the chunks of a resumed run continue one wandb run.
wandb's own settings apply (``WANDB_MODE=offline``, ``WANDB_PROJECT``,
``WANDB_DIR``; files go to the output folder unless ``WANDB_DIR`` is set). With
``log_to=None`` (the default) nothing here runs and wandb is never imported.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Optional

__all__ = ["LOG_TARGETS", "Tracker", "start"]

LOG_TARGETS = (None, "wandb")


class Tracker:
    """A started wandb run: ``log(entry)`` per training-log entry, ``close()`` at the end."""

    def __init__(self, run: Any):
        self.run = run

    def log(self, entry: dict) -> None:
        self.run.log({k: v for k, v in entry.items() if k != "step" and isinstance(v, (int, float))}, step=entry["step"])

    def close(self) -> None:
        self.run.finish()


def start(log_to: Optional[str], out_dir: Optional[Path], config: dict) -> Optional[Tracker]:
    """A :class:`Tracker` for ``log_to="wandb"``, None for ``log_to=None``; an ImportError naming wandb if it is missing."""
    if log_to is None:
        return None
    try:
        import wandb
    except ImportError:
        raise ImportError("log_to='wandb' needs the wandb package (pip install wandb); it is not installed here") from None
    run_id = None
    if out_dir is not None:
        id_file = Path(out_dir) / "wandb_run_id"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            from .atomic import atomic_write_bytes

            atomic_write_bytes(id_file, run_id.encode())
    where = os.environ.get("WANDB_DIR") or (str(out_dir) if out_dir is not None else None)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "icl-interp"), id=run_id, resume="allow" if run_id else None,
                     name=Path(out_dir).name if out_dir is not None else None, dir=where, config=config)
    return Tracker(run)
