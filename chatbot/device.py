"""Device, thread and precision choices shared by training and the chat runtime."""

from __future__ import annotations

import contextlib

import torch

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.validation import check, max_threads, reference_precision

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")  # for training
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # for running a trained model


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name not in DEVICES:
        raise ChatbotError(tr("unknown device {name!r}: choose one of {names}", name=name, names=", ".join(DEVICES)))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ChatbotError(tr("--device cuda asked for, but this torch sees no CUDA device"))
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(check("threads", threads, int, 1, max_threads()))


def cpu_has_bf16_matmul() -> bool:
    """True on CPUs with AMX or AVX-512 bf16, where oneDNN runs bf16 matrix work natively."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` is bf16 on CPUs that have it (faster at equal perplexity), else fp32; on GPUs from
    Ampere on it is tf32: fp32 weights and activations, matrix products rounded to TF32 (fastest
    on an H100, where this model's steps are bound by kernel launches and bf16 pays for a cuDNN
    plan per new batch shape). The measurements: `docs/performance.md`."""
    if name not in PRECISIONS:
        raise ChatbotError(
            tr("unknown precision {name!r}: choose one of {names}", name=name, names=", ".join(PRECISIONS))
        )
    has_tf32 = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
    if name == "tf32" and not has_tf32:
        raise ChatbotError(tr("--precision tf32 needs a CUDA GPU from Ampere on"))
    if name != "auto":
        return name
    if device.type == "cuda":
        return "tf32" if has_tf32 else "fp32"
    return "bf16" if cpu_has_bf16_matmul() else "fp32"


def use_precision(precision: str) -> None:
    """Process-wide part of a training precision: TF32 products, which backward passes need too."""
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass; weights and optimizer state stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def reply_precision(name: str, device: torch.device, reference: bool = False) -> str:
    """The weights replies run with: `inference_precision`, or with `reference`, the model's own
    float modules (`chatbot.validation.reference_precision`)."""
    return reference_precision(name) if reference else inference_precision(name, device)


def inference_precision(name: str, device: torch.device) -> str:
    """How a trained model's weights are held for replies (`chatbot.engine.load_engine`).

    A reply step reads every decoder weight matrix to compute one row, so it is bound by memory
    traffic: `auto` is int8 weights on the CPU where torch has fbgemm (`chatbot.engine.int8`),
    measured fastest there, and fp32 elsewhere (`docs/performance.md`)."""
    from chatbot.engine import int8

    if name not in INFERENCE_PRECISIONS:
        raise ChatbotError(
            tr("unknown precision {name!r}: choose one of {names}", name=name, names=", ".join(INFERENCE_PRECISIONS))
        )
    if name == "int8":
        int8.require_cpu(device)
        if not int8.available():
            raise ChatbotError(tr("--precision int8 needs a torch with fbgemm quantized kernels"))
    if name == "auto":
        return "int8" if device.type == "cpu" and int8.available() else "fp32"
    return name
