"""Device and dtype resolution shared by every local backend and the lm-eval model args.

``dtype: auto`` in a recipe means "what this hardware trains and serves well": bfloat16 on a
CUDA GPU that has it (Ampere and later), float16 on an older GPU, float32 on CPU. It does not
mean the checkpoint's own dtype (what lm-eval's and vLLM's ``auto`` mean), and never float32
on a GPU, so the same recipe runs at full speed there and correctly on a laptop.
"""

from __future__ import annotations

from typing import Literal

DTypeName = Literal["float32", "bfloat16", "float16"]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cuda_bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else unchanged."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> DTypeName:
    """The dtype name to load weights in on ``device`` (``cuda``, ``cuda:N``, ``cpu``, ``mps``)."""
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: expected auto, float32, bfloat16 or float16, got {dtype!r}")
        return dtype  # type: ignore[return-value]
    if not device.startswith("cuda"):
        return "float32"
    return "bfloat16" if cuda_bf16_supported() else "float16"


def torch_dtype(name: DTypeName):  # -> torch.dtype (torch imported lazily)
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
