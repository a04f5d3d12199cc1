"""Choosing the compute device and numeric precision from the `auto` / explicit settings."""

from __future__ import annotations

import contextlib

import torch

from facetool.errors import UsageError


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` picks CUDA when available, else CPU; an explicit device that is absent is a usage error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 autocast on CUDA and fp32 elsewhere; bf16 asked for on a CPU-only run falls back to fp32."""
    if spec == "fp32":
        return torch.float32
    if spec in ("auto", "bf16"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    raise UsageError(f"precision {spec!r}: expected auto, fp32 or bf16")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` when it is not fp32; a no-op context otherwise."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
