"""Checkpoint files: atomic writes, rotation, clear errors on bad files, fallback on load."""

from __future__ import annotations

import io
import random

import pytest
import torch

from metarl.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_save,
    load_checkpoint,
    load_latest,
    make_checkpoint,
    restore_global_rng,
)


def _ckpt(iteration: int) -> dict:
    learner = {"iteration": iteration, "params": {"w0": torch.full((2, 3), float(iteration))}}
    return make_checkpoint(learner, {"seed": 0}, {"env_steps": 10 * iteration, "wall_time": 1.5})


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_round_trip_keeps_everything(tmp_path):
    path = atomic_save(_ckpt(4), tmp_path / "c.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["format_version"] == 1
    assert ckpt["iteration"] == 4 and ckpt["learner"]["iteration"] == 4
    assert torch.equal(ckpt["learner"]["params"]["w0"], torch.full((2, 3), 4.0))
    assert ckpt["logger"] == {"env_steps": 40, "wall_time": 1.5}
    assert ckpt["config"] == {"seed": 0}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_global_rng_states_restore_exactly(tmp_path):
    torch.manual_seed(1)
    random.seed(1)
    path = atomic_save(_ckpt(1), tmp_path / "c.pt")
    expected = (torch.rand(3), random.random())
    torch.manual_seed(99)
    random.seed(99)
    restore_global_rng(load_checkpoint(path))
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.95])
def test_truncated_file_gives_one_line_error_naming_it(tmp_path, keep):
    path = atomic_save(_ckpt(3), tmp_path / "c.pt")
    _truncate(path, keep)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "corrupt or truncated" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"hello": 1}, "format_version None"),
        ({**_ckpt(1), "format_version": 2}, "format_version 2"),
        ({"format_version": 1, "iteration": 1}, "lacks learner"),
        ([1, 2, 3], "not a metarl checkpoint"),
        ({**_ckpt(1), "iteration": 5}, "inconsistent"),
    ],
)
def test_incompatible_content_is_named(tmp_path, content, expected):
    path = tmp_path / "c.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rotation_keeps_previous_and_last_numbered(tmp_path):
    manager = CheckpointManager(tmp_path, every=2, keep_last=2)
    for i in range(1, 8):
        manager.save(_ckpt(i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["iter_000004.pt", "iter_000006.pt", "latest.pt", "previous.pt"]
    assert load_checkpoint(tmp_path / "latest.pt")["iteration"] == 7
    assert load_checkpoint(tmp_path / "previous.pt")["iteration"] == 6
    assert load_checkpoint(tmp_path / "iter_000004.pt")["iteration"] == 4


def test_load_latest_falls_back_and_says_why(tmp_path):
    manager = CheckpointManager(tmp_path, every=2, keep_last=3)
    for i in range(1, 6):
        manager.save(_ckpt(i))

    path, ckpt = load_latest(tmp_path, log=io.StringIO())
    assert path.name == "latest.pt" and ckpt["iteration"] == 5

    _truncate(tmp_path / "latest.pt")
    log = io.StringIO()
    path, ckpt = load_latest(tmp_path, log=log)
    assert path.name == "previous.pt" and ckpt["iteration"] == 4
    assert "latest.pt" in log.getvalue() and "corrupt" in log.getvalue()
    assert "previous.pt" in log.getvalue() and "iteration 4" in log.getvalue()

    _truncate(tmp_path / "previous.pt", 0.2)
    log = io.StringIO()
    path, ckpt = load_latest(tmp_path, log=log)
    assert path.name == "iter_000004.pt" and ckpt["iteration"] == 4
    assert log.getvalue().count("\n") == 1  # one line


def test_load_latest_without_usable_checkpoint(tmp_path):
    assert load_latest(tmp_path / "nothing") is None
    assert load_latest(tmp_path) is None
    manager = CheckpointManager(tmp_path, every=0, keep_last=1)
    manager.save(_ckpt(1))
    manager.save(_ckpt(2))
    _truncate(tmp_path / "latest.pt")
    _truncate(tmp_path / "previous.pt")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as info:
        load_latest(tmp_path)
    assert "latest.pt" in str(info.value) and "previous.pt" in str(info.value)


def test_cleanup_removes_stale_temp_files(tmp_path):
    (tmp_path / ".latest.pt.abc.tmp").write_bytes(b"partial")
    manager = CheckpointManager(tmp_path, every=0, keep_last=1)
    manager.cleanup_temp_files()
    assert not list(tmp_path.iterdir())
