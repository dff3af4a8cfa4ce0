"""Bad input at every entry point of the command line: each flag with values that are not
finite, zero, negative or huge; untrusted model directories; bytes that are not UTF-8. Each
gets one line of error and a non-zero exit (or is a documented valid value), never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from chatbot.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
ODD_VALUES = ["nan", "inf", "-inf", "-0.0", "1e309", "0", "-1", "-7", str(10**30), str(-(10**30)), "1e-300", "banana"]


def numeric_options():
    """(subcommand, flag, its argparse type) for every option that takes a number."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.nargs is None and action.type not in (None, str, Path):
                yield name, action.option_strings[0], action.type


def baseline(command: str, tmp_path: Path) -> list[str]:
    """Arguments that make `command` stop at its first real work with a one-line error (a
    missing model, corpus or log): a value that passes its check ends there."""
    missing = str(tmp_path / "no-such-thing")
    return {
        "train": ["--out", str(tmp_path / "out"), "--corpus", missing + ".tsv"],
        "evaluate": ["--model", missing, "--corpus", "sample"],
        "reply": ["--model", missing, "hello"],
        "chat": ["--model", missing, "--no-log"],
        "serve": ["--model", missing, "--no-log"],
        "explain": ["--model", missing, "hello"],
        "retrain": ["--db", missing + ".db", "--out", str(tmp_path / "out")],
    }[command]


def accepts(kind, text: str) -> bool:
    try:
        kind(text)
        return True
    except argparse.ArgumentTypeError:
        return False


def run(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def test_every_numeric_flag_of_every_command_meets_odd_numbers_with_one_line(tmp_path, capsys, monkeypatch):
    from chatbot.model_config import RANGES as MODEL
    from chatbot.settings import RANGES as DECODING
    from training.train_config import TRAIN_RANGES as TRAIN

    monkeypatch.chdir(tmp_path)
    options = list(numeric_options())
    assert len(options) >= 40
    checked = 0
    for command, flag, kind in options:
        name = flag.removeprefix("--").replace("-", "_")
        ranges = {**TRAIN, **MODEL, **DECODING}
        for value in ODD_VALUES:
            code, lines = run([command, *baseline(command, tmp_path), flag, value], capsys)
            assert code != 0 and len(lines) == 1 and "Traceback" not in lines[0], (command, flag, value, lines)
            if accepts(kind, value):  # a documented valid value: within the range --help states
                assert name in ranges or flag in (
                    "--threads",
                    "--batch-size",
                    "--nproc",
                    "--replay-ratio",
                    "--unlikelihood",
                    "--taught-weight",
                    "--neighbours",
                    "--spread-pool",
                ), flag
                if name in ranges:
                    _, low, high = ranges[name]
                    assert low <= float(value) <= high, (flag, value)
                # past the flag's own check: it ends at the missing file, or at a rule between settings
                assert lines[0].startswith("chatbot: error:"), (command, flag, value, lines)
            else:
                assert code == 2 and f"error: {flag}: " in lines[0], (command, flag, value, lines)
            checked += 1
    assert checked >= 40 * len(ODD_VALUES)


def test_settings_refused_after_parsing_are_one_line_too(tmp_path, capsys):
    cases = [
        ["reply", "--min-length", "50", "--max-length", "10", "hi"],
        ["reply", "--strategy", "beam", "--beam-size", "2", "--n-best", "3", "hi"],
        ["reply", "--strategy", "sample", "--temperature", "0.001", "hi"],
        ["reply", "--strategy", "sample", "--top-p", "0", "hi"],
        ["train", "--out", str(tmp_path / "o"), "--hidden-size", "97"],
        ["train", "--out", str(tmp_path / "o"), "--hidden-size", "8192", "--embedding-dim", "8192", "--layers", "8"],
    ]
    for argv in cases:
        code, lines = run(argv, capsys)
        assert code == 1 and len(lines) == 1 and lines[0].startswith("chatbot: error:"), (argv, lines)


def test_a_tiny_top_p_samples_the_most_likely_token(overfit_dir, capsys):
    code = main(
        ["reply", "--model", str(overfit_dir), "--strategy", "sample", "--top-p", "1e-300", "--seed", "1", "hi there"]
    )
    assert code == 0 and capsys.readouterr().out.strip()


def test_reply_answers_every_line_it_can_read_when_some_are_not_utf8(overfit_dir, sample_pairs):
    good = sample_pairs[0]
    lines = [good.source.encode(), b"\xff\xfe broken \xc3", b"", "caf\u00e9 \u2603 \U0001f600".encode(), b"x" * 100_001]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot",
            "reply",
            "--model",
            str(overfit_dir),
            "--threads",
            "1",
            "--strategy",
            "greedy",
        ],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=120,
    )
    out = result.stdout.decode().splitlines()
    assert result.returncode == 0 and "Traceback" not in result.stderr.decode()
    assert len(out) == 5 and out[0] == good.reply and out[1] == "" and out[2] == "" and out[3] and out[4] == ""
    errors = result.stderr.decode().splitlines()
    assert any("line 2 is not valid UTF-8" in e for e in errors) and any("line 5 is longer" in e for e in errors)


def test_an_argument_that_is_not_utf8_is_replied_to(overfit_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot",
            "reply",
            "--model",
            str(overfit_dir),
            "--threads",
            "1",
            b"caf\xff bad".decode("utf-8", "surrogateescape"),
        ],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() and not result.stderr


# --- untrusted model directories -----------------------------------------------------------


def model_copy(overfit_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(overfit_dir, target)
    return target


def set_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    config["model"].update(changes)
    (model / "config.json").write_text(json.dumps(config))


def damage(case: str, model: Path) -> None:
    if case in (
        "string for a number",
        "bool for a number",
        "layers 0",
        "huge vocabulary",
        "huge hidden size",
        "huge output rank",
        "negative size",
        "nan dropout",
        "unknown attention",
    ):
        change = {
            "string for a number": {"vocab_size": "413"},
            "bool for a number": {"layers": True},
            "layers 0": {"layers": 0},
            "huge vocabulary": {"vocab_size": 10**9},
            "huge hidden size": {"hidden_size": 10**5},
            "huge output rank": {"output_rank": 10**6},
            "negative size": {"embedding_dim": -4},
            "nan dropout": {"dropout": float("nan")},
            "unknown attention": {"attention": ["dot"]},
        }[case]
        set_config(model, **change)
    elif case == "sizes that fit the checks, not the weights":
        set_config(model, hidden_size=12000, embedding_dim=1000)  # would allocate gigabytes before a shape error
    elif case == "deeply nested JSON":
        (model / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    elif case == "config is a directory":
        (model / "config.json").unlink()
        (model / "config.json").mkdir()
    elif case == "config is a symlink loop":
        (model / "config.json").unlink()
        os.symlink(model / "loop", model / "config.json")
        os.symlink(model / "config.json", model / "loop")
    elif case == "tokenizer is a directory":
        (model / "tokenizer.model").unlink()
        (model / "tokenizer.model").mkdir()
    elif case == "tokenizer is a symlink loop":
        (model / "tokenizer.model").unlink()
        os.symlink(model / "tokenizer.model", model / "tokenizer.model")
    elif case == "tokenizer is a FIFO":
        (model / "tokenizer.model").unlink()
        os.mkfifo(model / "tokenizer.model")
    elif case == "weights are a FIFO":
        (model / "model.safetensors").unlink()
        os.mkfifo(model / "model.safetensors")
    elif case == "weights hold NaN":
        weights = load_file(model / "model.safetensors")
        weights["decoder.combine.weight"][3, 3] = float("nan")
        save_file(weights, model / "model.safetensors")
    elif case == "weights header lies":
        data = (model / "model.safetensors").read_bytes()
        (model / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + data[8:])
    else:
        raise AssertionError(case)


CASES = [
    "string for a number",
    "bool for a number",
    "layers 0",
    "huge vocabulary",
    "huge hidden size",
    "huge output rank",
    "negative size",
    "nan dropout",
    "unknown attention",
    "sizes that fit the checks, not the weights",
    "deeply nested JSON",
    "config is a directory",
    "config is a symlink loop",
    "tokenizer is a directory",
    "tokenizer is a symlink loop",
    "tokenizer is a FIFO",
    "weights are a FIFO",
    "weights hold NaN",
    "weights header lies",
]


@pytest.mark.parametrize("case", CASES)
def test_an_untrusted_model_directory_is_one_line_of_error(case, overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)
    damage(case, model)
    code, lines = run(["reply", "--model", str(model), "--threads", "1", "hi"], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"chatbot: error: {model}"), lines
    code, lines = run(["evaluate", "--model", str(model), "--corpus", "sample", "--threads", "1"], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"chatbot: error: {model}"), lines


def test_a_string_size_is_named_as_such_not_as_a_mismatch(overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)
    set_config(model, vocab_size="413")
    _, lines = run(["reply", "--model", str(model), "hi"], capsys)
    assert "vocab_size must be a whole number" in lines[0] and "'413'" in lines[0]


def test_a_fifo_tokenizer_never_blocks_the_chat_or_reply(overfit_dir, tmp_path):
    model = model_copy(overfit_dir, tmp_path)
    damage("tokenizer is a FIFO", model)
    for argv in (["reply", "--model", str(model), "hi"], ["chat", "--model", str(model), "--no-log"]):
        result = subprocess.run([sys.executable, "-m", "chatbot", *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "not a regular file" in result.stderr and len(result.stderr.splitlines()) == 1
