"""Optional Weights & Biases logging (`logger.wandb=true`); the package is imported only then."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

WANDB_MODES = ("offline", "online", "disabled")


class WandbSink:
    """Mirrors progress rows to a W&B run stored in `<run_dir>/wandb`.

    Offline by default (`wandb sync <run_dir>/wandb/offline-run-*` uploads later). The W&B run id
    is derived from the run directory, so a resumed harl run continues the same W&B run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        name: str,
        config: dict[str, Any],
        project: str,
        entity: str | None,
        group: str | None,
        mode: str,
    ) -> None:
        if mode not in WANDB_MODES:
            raise ValueError(f"unknown logger.wandb_mode {mode!r}; valid: {', '.join(WANDB_MODES)}")
        try:
            import wandb
        except ImportError:
            raise ValueError(
                "logger.wandb=true needs the wandb package: pip install wandb "
                "(or run with logger.wandb=false)"
            ) from None
        run_dir = Path(run_dir).resolve()
        run_id = hashlib.sha1(str(run_dir).encode()).hexdigest()[:16]
        self._run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            name=name,
            mode=mode,
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow",
        )

    def log(self, row: dict[str, Any], step: int) -> None:
        self._run.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and v == v}, step=step)

    def close(self) -> None:
        self._run.finish()
