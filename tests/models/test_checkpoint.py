"""Checkpoint files: round trip through the safe loader, refusal of anything else, atomic replacement."""

from __future__ import annotations

import errno
import pickle

import pytest
import torch
from process_helpers import file_size_limit

from facetool.errors import FacetoolError
from facetool.models.checkpoint import checkpoint_bytes, load_checkpoint, make_checkpoint, save_checkpoint


def sample_checkpoint(epoch: int = 3) -> dict:
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return make_checkpoint(
        model=model.state_dict(),
        backbone={"name": "x", "embedding_dim": 2, "dropout": 0.1, "image_size": 96},
        config={"seed": 1, "checkpoint_dir": "runs/a", "validation": {"pairs_file": None}},
        epoch=epoch,
        history=[{"epoch": 1, "train_loss": 0.1, "val_loss": None}],
        optimizer=optimizer.state_dict(),
        scheduler={"last_epoch": epoch},
    )


def test_round_trip_through_weights_only(tmp_path):
    ck = sample_checkpoint()
    save_checkpoint(ck, tmp_path / "a.pth")
    back = load_checkpoint(tmp_path / "a.pth")
    assert back["format"] == "facetool-checkpoint" and back["format_version"] == 1 and back["epoch"] == 3
    assert all(torch.equal(back["model"][k], ck["model"][k]) for k in ck["model"])
    assert back["history"] == ck["history"] and back["config"] == ck["config"]
    assert back["optimizer"]["state"][0]["step"] == ck["optimizer"]["state"][0]["step"]


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: torch.save({"format": "facetool-checkpoint", "x": Payload()}, p), "unpickling"),
        (lambda p: torch.save({"weights": torch.ones(2)}, p), "no format="),
        (lambda p: p.write_bytes(pickle.dumps({"format": "facetool-checkpoint"})), "not a PyTorch archive"),
        (lambda p: p.write_text("hello"), "not a PyTorch archive"),
        (lambda p: torch.save({**sample_checkpoint(), "format_version": 7}, p), "format version 7"),
        (lambda p: torch.save({"format": "facetool-checkpoint", "format_version": 1}, p), "missing model"),
    ],
)
def test_refuses_what_is_not_a_facetool_checkpoint(tmp_path, capsys, content, message):
    path = tmp_path / "bad.pth"
    content(path)
    with pytest.raises(FacetoolError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "must never run" not in capsys.readouterr().out


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FacetoolError, match="not found"):
        load_checkpoint(tmp_path / "none.pth")


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint(sample_checkpoint(epoch=1), path)
    broken = sample_checkpoint(epoch=2)
    broken["history"] = [Payload() for _ in range(3)]
    broken["history"].append(lambda: None)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for an unpicklable lambda
        save_checkpoint(broken, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    save_checkpoint(sample_checkpoint(epoch=2), path)
    assert load_checkpoint(path)["epoch"] == 2
    with pytest.raises(ValueError):
        save_checkpoint({"model": {}}, path)


def test_write_that_fails_partway_keeps_the_old_checkpoint_and_no_temp(tmp_path):
    """A real EFBIG (RLIMIT_FSIZE) halfway through the archive's bytes, after pickling succeeded."""
    path = tmp_path / "last.pth"
    save_checkpoint(sample_checkpoint(epoch=1), path)
    newer = sample_checkpoint(epoch=2)
    with pytest.raises(OSError) as caught, file_size_limit(len(checkpoint_bytes(newer)) // 2):
        save_checkpoint(newer, path)
    assert caught.value.errno == errno.EFBIG
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
