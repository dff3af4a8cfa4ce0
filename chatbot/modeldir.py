"""A model directory rebuilds a model on its own: config.json, model.safetensors, tokenizer.model.

Weights are safetensors and training state is read with `weights_only=True`: a checkpoint is
untrusted input and is never unpickled. torch is imported by the functions that need it, so that
checking a directory (`check_model_files`) is quick: the chat does it before torch loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # Windows: no flock, and no lock
    fcntl = None

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.model_config import ModelConfig
from chatbot.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

    from chatbot.model import Seq2Seq

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.model"
MAX_CONFIG_BYTES = 1 << 20
MAX_TOKENIZER_BYTES = 64 << 20
MAX_HEADER_BYTES = 16 << 20
SAVED_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}  # `save_weights`' metadata -> safetensors
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}
SECTIONS = ("train", "best", "last", "lineage", "taught")  # config.json's tables besides "model", when present
TAUGHT_GATES = ("start", "near", "same", "alone")  # what the "taught" table may set (`chatbot.taught.gates_of`)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: a crash leaves the old file or the new one.

    Every file of a model directory follows one rule: readable by all as the umask allows (a
    model is meant to be shared), set after `write`, since some writers (safetensors) make
    their file anew as owner-only."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_directory(path: Path):
    """Hold `path` (made when missing) as the one run writing it: an exclusive lock on the
    directory for as long as the block runs, so a second train, retrain or bundle into the
    same directory is refused in one line instead of mixing two runs' files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ChatbotError(tr("{path}: exists and is not a directory; give a directory for the model", path=path))
    made = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise ChatbotError(tr("{path}: cannot write ({strerror})", path=path, strerror=err.strerror or err)) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ChatbotError(
                    tr("{path}: another run is writing this directory; wait for it or choose another", path=path)
                ) from None
        yield path
    except BaseException:
        if made:  # a run that failed before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def save_model(directory: Path, model: Seq2Seq, tokenizer: Tokenizer, extra: dict | None = None) -> None:
    """Write config, tokenizer and weights (each atomically); `extra` lands in config.json too."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model": model.cfg.to_dict(), **(extra or {})}
    atomic_write(directory / TOKENIZER, tokenizer.save)
    atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    save_weights(directory / WEIGHTS, model)


def save_weights(path: Path, model: Seq2Seq, dtype=None) -> None:
    """The model's weights as safetensors, atomically, in `dtype` (default float32); a tied
    output layer is the embedding and is stored once."""
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float32
    weights = {
        k: v.detach().to(dtype).cpu().contiguous()
        for k, v in model.state_dict().items()
        if not (k == "out.weight" and model.cfg.tie_embeddings)
    }
    metadata = (
        {"format": "pt"} if dtype == torch.float32 else {"format": "pt", "dtype": str(dtype).removeprefix("torch.")}
    )
    atomic_write(path, lambda p: save_file(weights, p, metadata=metadata))


@contextlib.contextmanager
def regular_file(path: Path):
    """(binary file, its size) of `path`, which must be a regular file. A model directory is
    untrusted: a directory, a FIFO (which would block forever), a device or a symlink loop in the
    place of a file is a one-line error. Opened without blocking, then checked, then read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ChatbotError(tr("{path}: missing", path=path)) from None
    except OSError as err:
        raise ChatbotError(tr("{path}: cannot read ({strerror})", path=path, strerror=err.strerror or err)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ChatbotError(tr("{path}: not a regular file", path=path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            yield f, info.st_size
    except OSError as err:
        raise ChatbotError(tr("{path}: cannot read ({strerror})", path=path, strerror=err.strerror or err)) from None
    finally:
        os.close(fd)


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (`regular_file`)."""
    with regular_file(path) as (f, size):
        if size > limit:
            raise ChatbotError(
                tr(
                    "{path}: {size:,} bytes, more than the {limit:,} a model file may have",
                    path=path,
                    size=size,
                    limit=limit,
                )
            )
        return f.read(limit + 1)


def read_config(directory: Path) -> dict:
    path = Path(directory) / CONFIG
    if not Path(directory).is_dir():
        raise ChatbotError(tr("{directory}: no such model directory", directory=directory))
    try:
        config = json.loads(read_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except ChatbotError as err:
        if str(err).endswith(": missing"):
            raise ChatbotError(tr("{path}: missing (not a model directory?)", path=path)) from None
        raise
    except (ValueError, RecursionError):  # bad JSON or UTF-8, or an integer too long to read
        raise ChatbotError(tr("{path}: corrupt (not valid JSON)", path=path)) from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ChatbotError(tr("{path}: has no 'model' settings", path=path))
    for section in SECTIONS:
        if section in config and not isinstance(config[section], dict):
            raise ChatbotError(tr("{path}: its '{section}' must be a JSON object", path=path, section=section))
    check_gates(path, config.get("taught", {}))
    return config


def check_gates(path: Path, gates: dict) -> None:
    """The taught memory's gates (`chatbot.taught.gates_of`; the table may say how they were
    chosen too): cosines, each a finite number from -1 to 1, and `near` below `same` (λ's ramp
    runs between them)."""
    for name, value in ((n, gates[n]) for n in TAUGHT_GATES if n in gates):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
            raise ChatbotError(tr("{path}: taught gate '{name}' must be a number from -1 to 1", path=path, name=name))
    if ("near" in gates) != ("same" in gates):  # λ's ramp runs between them: one alone could cross the other's default
        raise ChatbotError(tr("{path}: taught gates 'near' and 'same' go together", path=path))
    if "near" in gates and not gates["near"] < gates["same"]:
        raise ChatbotError(tr("{path}: taught gate 'near' must be below 'same'", path=path))


def model_settings(directory: Path, config: dict) -> ModelConfig:
    """config.json's model settings, each checked for type and range."""
    try:
        return ModelConfig.from_saved(config["model"])
    except ChatbotError as err:
        raise ChatbotError(tr("{path}: {reason}", path=Path(directory) / CONFIG, reason=err)) from None
    except TypeError as err:
        raise ChatbotError(
            tr("{path}: bad model settings ({reason})", path=Path(directory) / CONFIG, reason=err)
        ) from None


def check_model_files(directory: Path) -> None:
    """Refuse a directory without a readable config.json (with valid model settings), weights
    file or tokenizer, without torch: the chat does this before its screen opens."""
    model_settings(directory, read_config(directory))
    weights_header(Path(directory) / WEIGHTS)
    read_file(Path(directory) / TOKENIZER, MAX_TOKENIZER_BYTES)


def weights_header(path: Path) -> dict:
    """The safetensors header of a weights file: {name: {"dtype", "shape", "data_offsets"}},
    read without reading the weights, and checked to lie within the file."""
    with regular_file(path) as (f, file_size):
        prefix = f.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < size <= min(MAX_HEADER_BYTES, file_size - 8):
            raise ChatbotError(tr("{path}: corrupt (not a safetensors file)", path=path))
        try:
            header = json.loads(f.read(size).decode("utf-8"))
        except (ValueError, RecursionError):  # bad JSON or UTF-8, or an integer too long to read
            raise ChatbotError(tr("{path}: corrupt (its header is not valid JSON)", path=path)) from None
    if not isinstance(header, dict):
        raise ChatbotError(tr("{path}: corrupt (its header is not a table of tensors)", path=path))
    metadata = header.pop("__metadata__", None) or {}
    saved_as = SAVED_DTYPES.get(metadata.get("dtype", "float32")) if isinstance(metadata, dict) else None
    if saved_as is None:
        raise ChatbotError(tr("{path}: corrupt (its metadata names no dtype this program writes)", path=path))
    data = file_size - 8 - size
    for name, entry in header.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("shape"), list)
            and isinstance(entry.get("data_offsets"), list)
        )
        if (
            not ok
            or len(entry["data_offsets"]) != 2
            or not all(isinstance(x, int) and 0 <= x <= data for x in entry["data_offsets"])
        ):
            raise ChatbotError(
                tr("{path}: corrupt (tensor {name!r} lies outside the file)", path=path, name=str(name)[:40])
            )
        if entry.get("dtype") != saved_as:  # read as another type, the bytes are garbage weights
            raise ChatbotError(
                tr(
                    "{path}: corrupt (tensor {name!r} says {dtype}, but the model was saved as {saved})",
                    path=path,
                    name=str(name)[:40],
                    dtype=str(entry.get("dtype"))[:10],
                    saved=saved_as,
                )
            )
        count = 1
        for n in entry["shape"]:
            count = count * n if isinstance(n, int) and n >= 0 else -1
        if count < 0 or entry["data_offsets"][1] - entry["data_offsets"][0] != count * DTYPE_BYTES[saved_as]:
            raise ChatbotError(
                tr(
                    "{path}: corrupt (tensor {name!r} has not the bytes its shape needs)",
                    path=path,
                    name=str(name)[:40],
                )
            )
    return header


def check_weight_shapes(path: Path, header: dict, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights whose names or shapes differ from what config.json describes, before any is read."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ChatbotError(
            tr(
                "{path}: does not fit config.json (missing {missing}, unexpected {unexpected})",
                path=path,
                missing=missing[:3],
                unexpected=[str(u)[:40] for u in unexpected[:3]],
            )
        )
    for name, shape in expected.items():
        if tuple(header[name]["shape"]) != tuple(shape):
            raise ChatbotError(
                tr(
                    "{path}: does not fit config.json ({name} is {actual}, config.json says {shape})",
                    path=path,
                    name=name,
                    actual=header[name]["shape"],
                    shape=list(shape),
                )
            )


def load_model(
    directory: Path, device: str | torch.device = "cpu", precision: str = "fp32"
) -> tuple[Seq2Seq, Tokenizer, dict]:
    """Model (in eval mode, on `device`), tokenizer and the whole config.json of a model directory.

    Everything is checked before it is used: the settings' types and ranges, the tokenizer
    against the vocabulary size, the weights' names and shapes (from the file's header, before
    any weight is read) and, once read, that every weight is finite.
    `precision`: fp32 or bf16 weights. (Replies run an engine built from the model: `chatbot.engine.load_engine`.)"""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from chatbot.model import Seq2Seq

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"load_model holds weights in fp32 or bf16, not {precision!r}")

    directory = Path(directory)
    config = read_config(directory)
    cfg = model_settings(directory, config)
    tokenizer = Tokenizer.from_bytes(read_file(directory / TOKENIZER, MAX_TOKENIZER_BYTES), directory / TOKENIZER)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise ChatbotError(
            tr(
                "{directory}: tokenizer has {pieces} pieces but the model expects {expected}",
                directory=directory,
                pieces=tokenizer.vocab_size,
                expected=cfg.vocab_size,
            )
        )
    if cfg.context_turns and tokenizer.speakers is None:
        raise ChatbotError(
            tr(
                "{directory}: the model reads earlier turns, but its tokenizer has no speaker marks",
                directory=directory,
            )
        )
    path = directory / WEIGHTS
    with torch.device("meta"):  # shapes only, nothing allocated
        expected = {
            k: tuple(v.shape)
            for k, v in Seq2Seq(cfg).state_dict().items()
            if not (k == "out.weight" and cfg.tie_embeddings)
        }
    header = weights_header(path)
    if cfg.tie_embeddings:
        header.pop("out.weight", None)
    check_weight_shapes(path, header, expected)
    try:
        weights = load_file(path)  # a regular file whose header fits config.json (checked above)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ChatbotError(tr("{path}: corrupt ({reason})", path=path, reason=str(err).splitlines()[0])) from None
    if cfg.tie_embeddings:
        weights.pop("out.weight", None)
    bad = [
        name
        for name, tensor in weights.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise ChatbotError(
            tr("{path}: {bad} holds NaN or infinite values (a diverged training run?)", path=path, bad=bad[0])
        )
    model = Seq2Seq(cfg)
    try:
        model.load_state_dict(weights, strict=not cfg.tie_embeddings)
    except RuntimeError as err:
        raise ChatbotError(
            tr("{path}: does not fit config.json ({reason})", path=path, reason=str(err).splitlines()[-1].strip())
        ) from None
    model = model.to(device=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float32).eval()
    return model, tokenizer, config


def load_training_state(path: Path) -> dict:
    """Optimizer, schedule and data position saved by training; read without unpickling."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ChatbotError(tr("{path}: no training state to resume from", path=path)) from None
    except Exception as err:
        raise ChatbotError(
            tr("{path}: corrupt training state ({reason})", path=path, reason=str(err).splitlines()[0][:120])
        ) from None
