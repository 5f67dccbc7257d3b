"""Optional experiment logging: ``TrainConfig(log_to="wandb")`` sends the training log to Weights & Biases.

Each entry of the training log (loss, learning rate, curriculum, evaluations) goes
to ``wandb.log`` at its step. With an output folder the wandb run id is kept in
``out_dir/wandb_run_id``, so the chunks of a resumed run continue one wandb run.
wandb's own settings apply (``WANDB_MODE=offline``, ``WANDB_PROJECT``,
``WANDB_DIR``; files go to the output folder unless ``WANDB_DIR`` is set). With
``log_to=None`` (the default) nothing here runs and wandb is never imported.

It never stalls a run: without credentials (no ``WANDB_API_KEY``, no ``~/.netrc``
entry for the wandb host) and no ``WANDB_MODE``, the run is logged offline and one
line on stderr says so and how to upload it (``wandb sync``); with credentials,
``wandb.init`` gets :data:`INIT_TIMEOUT_S` seconds (``WANDB_INIT_TIMEOUT`` overrides),
and a run that cannot start raises a ConnectionError saying how to go offline.
"""

from __future__ import annotations

import netrc
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

__all__ = ["LOG_TARGETS", "INIT_TIMEOUT_S", "Tracker", "start", "has_credentials"]

LOG_TARGETS = (None, "wandb")
#: seconds wandb.init may take to start a run online (wandb's own default is 90, plus retries)
INIT_TIMEOUT_S = 20.0


def has_credentials() -> bool:
    """True when wandb could log in without asking: ``WANDB_API_KEY``, or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


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
            from ..core.atomic import atomic_write_bytes

            atomic_write_bytes(id_file, run_id.encode())
    where = os.environ.get("WANDB_DIR") or (str(out_dir) if out_dir is not None else None)
    files = Path(where or ".") / "wandb"
    offline = "offline-run-*"
    kwargs: dict[str, Any] = {}
    if not os.environ.get("WANDB_MODE") and not has_credentials():
        kwargs["mode"] = "offline"
        print(f"icl-interp: no Weights & Biases credentials (WANDB_API_KEY, or wandb login): logging offline to {files}; "
              f"upload later with: wandb sync {files / offline}", file=sys.stderr)
    if not os.environ.get("WANDB_INIT_TIMEOUT"):
        kwargs["settings"] = wandb.Settings(init_timeout=INIT_TIMEOUT_S)
    try:
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "icl-interp"), id=run_id, resume="allow" if run_id else None,
                         name=Path(out_dir).name if out_dir is not None else None, dir=where, config=config, **kwargs)
    except (wandb.errors.CommError, TimeoutError) as e:  # no network, a timeout, a refused key
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConnectionError(
            f"Weights & Biases could not start the run ({reason}): check the network and the key (wandb login), "
            f"or log offline with WANDB_MODE=offline and upload later with: wandb sync {files / offline}"
        ) from e
    return Tracker(run)
