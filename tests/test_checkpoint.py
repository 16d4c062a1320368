"""Checkpoint files are written atomically and bad ones give clear errors."""

import pytest
import torch

from harl.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "latest.pt"
    save_checkpoint({"step": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]


def test_non_harl_file_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a harl checkpoint"):
        load_checkpoint(path)


def test_run_dir_without_checkpoint_is_explained(tmp_path):
    with pytest.raises(CheckpointError, match="never checkpointed"):
        load_checkpoint(tmp_path)
