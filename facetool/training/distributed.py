"""Training on several processes with DistributedDataParallel: process group, rank roles, launching.

`torchrun --nproc_per_node N -m facetool train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; `launch` starts
the same from Python (through torch.distributed.run) with the resolved configuration written to the run
directory. Each rank samples and mines its own people batch; gradients are averaged by DDP; rank 0 alone
writes logs, plots and checkpoints. At the end every rank's weights are hashed and compared.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from facetool.config.base import dump_toml
from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError
from facetool.files import atomic_write_text, make_dir

LAUNCH_CONFIG = "launch.toml"


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank, number of processes, and the local rank for the device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env(env: dict[str, str] | None = None) -> Ranks:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a single process when they are absent."""
    env = dict(os.environ if env is None else env)
    try:
        return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise FacetoolError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)"
        ) from None


def rank_device(spec: str, ranks: Ranks) -> str:
    """Under several processes on CUDA, each rank takes the GPU of its local rank."""
    if ranks.distributed and spec in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    return spec


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the run's process group (NCCL on CUDA, gloo on CPU); a no-op for a single process."""
    if not ranks.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=ranks.rank,
        world_size=ranks.world_size,
        device_id=device if device.type == "cuda" else None,
    )


def close_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_min(value: int, device: torch.device) -> int:
    """The smallest `value` over all ranks (the value itself for a single process)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; the tensor itself for a single process."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), which each rank's last forward changed."""
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's keys and exact tensor bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def check_ranks_agree(state: dict[str, torch.Tensor]) -> str:
    """The digest of the weights, after checking every rank holds the same; FacetoolError if they differ."""
    mine = state_digest(state)
    if not dist.is_initialized():
        return mine
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, mine)
    if len(set(digests)) != 1:
        raise FacetoolError(f"ranks ended with different weights: {digests}")
    return mine


def write_launch_config(config: TrainConfig) -> Path:
    """The resolved configuration as launch.toml in the run directory, for the processes `launch` starts."""
    run_dir = Path(config.checkpoint_dir)
    make_dir(run_dir, "run folder")
    path = run_dir / LAUNCH_CONFIG
    atomic_write_text(path, dump_toml(config.model_dump(mode="json")))
    return path


def launch(config_path: Path, nproc: int, resume: str | None = None, overwrite: bool = False) -> None:
    """Start `nproc` processes of `facetool train --config config_path` on this machine, as torchrun does."""
    from torch.distributed.run import main as torchrun

    args = ["--standalone", "--nproc_per_node", str(nproc), "-m", "facetool", "train", "--config"]
    args.append(str(config_path))
    if resume is not None:
        args += ["--resume", str(resume)]
    if overwrite:
        args.append("--overwrite")
    try:
        torchrun(args)
    except Exception as exc:
        raise FacetoolError(f"distributed training with {nproc} processes failed: {exc}") from None
