"""Choosing the training device and torch's thread count; moving batches between devices."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Batch = TypeVar("Batch", bound="DataclassInstance")


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={name!r} but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use device=cpu or device=auto"
            )
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:<index>")


def configure_threads(n_threads: int) -> None:
    """Trainer's intra-op threads. 1 is the safe default on small machines: with 2 threads and
    any other busy process (env workers) OpenMP spin-waiting makes each update several times
    slower (measured: 6 ms -> 50-190 ms)."""
    if n_threads > 0:
        torch.set_num_threads(n_threads)


@contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `n_threads` (if > 0) inside the block, restored after it."""
    before = torch.get_num_threads()
    if n_threads <= 0 or n_threads == before:
        yield
        return
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def move_batch(batch: Batch, device: torch.device | str) -> Batch:
    """A copy of a dataclass of tensors (or lists of tensors, or None) with every tensor on
    `device`. Copies are asynchronous only into a GPU: a GPU -> host copy could be read before
    it lands."""
    non_blocking = torch.device(device).type == "cuda"

    def move(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.to(device, non_blocking=non_blocking)

    return replace(
        batch,
        **{
            f.name: [move(v) for v in value] if isinstance(value, list) else move(value)
            for f in fields(batch)
            for value in [getattr(batch, f.name)]
        },
    )
