"""A model directory rebuilds a model on its own: config.json, model.safetensors, tokenizer.model.

Weights are safetensors and training state is read with `weights_only=True`: a checkpoint is
untrusted input and is never unpickled. torch is imported by the functions that need it, so that
checking a directory (`check_model_files`) is quick: the chat does it before torch loads.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.errors import ChatbotError
from chatbot.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

    from chatbot.model import Seq2Seq

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.model"


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: a crash leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; a model is meant to be shared
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(directory: Path, model: Seq2Seq, tokenizer: Tokenizer, extra: dict | None = None) -> None:
    """Write config, tokenizer and weights (each atomically); `extra` lands in config.json too."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model": model.cfg.to_dict(), **(extra or {})}
    atomic_write(directory / TOKENIZER, tokenizer.save)
    atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k != "out.weight" or not model.cfg.tie_embeddings}
    atomic_write(directory / WEIGHTS, lambda p: save_file(weights, p, metadata={"format": "pt"}))


def read_config(directory: Path) -> dict:
    path = Path(directory) / CONFIG
    if not Path(directory).is_dir():
        raise ChatbotError(f"{directory}: no such model directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatbotError(f"{path}: missing (not a model directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ChatbotError(f"{path}: corrupt (not valid JSON)") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ChatbotError(f"{path}: has no 'model' settings")
    return config


def check_model_files(directory: Path) -> None:
    """Refuse a directory without a readable config.json, weights file or tokenizer, without torch."""
    read_config(directory)
    for name in (WEIGHTS, TOKENIZER):
        if not (Path(directory) / name).is_file():
            raise ChatbotError(f"{Path(directory) / name}: missing")


def load_model(
    directory: Path, device: str | torch.device = "cpu", precision: str = "fp32"
) -> tuple[Seq2Seq, Tokenizer, dict]:
    """Model (in eval mode, on `device`), tokenizer and the whole config.json of a model directory.

    `precision`: fp32 or bf16 weights, or int8 weights in the per-token matrices for CPU replies (`chatbot.int8`)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from chatbot.model import ModelConfig, Seq2Seq

    directory = Path(directory)
    config = read_config(directory)
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (TypeError, ChatbotError) as err:
        raise ChatbotError(f"{directory / CONFIG}: {err}") from None
    tokenizer = Tokenizer.load(directory / TOKENIZER)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise ChatbotError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} pieces but the model expects {cfg.vocab_size}"
        )
    model = Seq2Seq(cfg)
    path = directory / WEIGHTS
    try:
        weights = load_file(path)
    except FileNotFoundError:
        raise ChatbotError(f"{path}: missing") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise ChatbotError(f"{path}: corrupt ({str(err).splitlines()[0]})") from None
    if cfg.tie_embeddings:
        weights.pop("out.weight", None)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise ChatbotError(f"{path}: does not fit config.json ({str(err).splitlines()[-1].strip()})") from None
    missing = [k for k in missing if not (k == "out.weight" and cfg.tie_embeddings)]
    if missing or unexpected:
        raise ChatbotError(f"{path}: does not fit config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model = model.to(device=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float32).eval()
    if precision == "int8":
        from chatbot import int8

        int8.require_cpu(device)
        int8.quantize(model)
    return model, tokenizer, config


def load_training_state(path: Path) -> dict:
    """Optimizer, schedule and data position saved by training; read without unpickling."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ChatbotError(f"{path}: no training state to resume from") from None
    except Exception as err:
        raise ChatbotError(f"{path}: corrupt training state ({str(err).splitlines()[0][:120]})") from None
