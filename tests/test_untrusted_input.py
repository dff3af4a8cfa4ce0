"""Input that is not what it claims: numbers too long to read, weights whose header names another
type, config sections of the wrong kind, arguments and JSON that spell invalid text. Each is one
line of error (or a reply), never a traceback."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_faults import model_copy, run

HUGE = "9" * 5000


def rewrite_header(weights: Path, change) -> None:
    """Rewrite the safetensors header of `weights` in place through `change(header)`, keeping
    the tensors' bytes (the header is padded back to its length where it can be)."""
    data = weights.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    text = change(header) if callable(change) else change
    text = text if isinstance(text, str) else json.dumps(header)
    raw = text.encode()
    raw += b" " * max(0, size - len(raw))
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


@pytest.mark.parametrize("where", ["config.json", "safetensors header"])
def test_an_integer_of_5000_digits_in_a_model_file_is_one_line(where, overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)
    if where == "config.json":
        config = (model / "config.json").read_text()
        (model / "config.json").write_text(config.replace('"layers": 1', '"layers": ' + HUGE, 1))
    else:
        rewrite_header(
            model / "model.safetensors", lambda h: json.dumps(h).replace('"shape": [', f'"shape": [{HUGE}, ', 1)
        )
    for argv in (["reply", "--model", str(model), "hi"], ["evaluate", "--model", str(model), "--corpus", "sample"]):
        code, lines = run(argv, capsys)
        assert code == 1 and len(lines) == 1 and "corrupt" in lines[0], lines


@pytest.mark.parametrize("dtype", ["I16", "BF16", "F16", "I32"])
def test_weights_whose_header_names_another_type_are_refused(dtype, overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)  # saved as F32 (no dtype in its metadata)

    def retype(header):
        name = next(k for k in header if k != "__metadata__")
        header[name]["dtype"] = dtype
        return header

    rewrite_header(model / "model.safetensors", retype)
    code, lines = run(["evaluate", "--model", str(model), "--corpus", "sample"], capsys)
    assert code == 1 and len(lines) == 1 and "corrupt" in lines[0] and "F32" in lines[0], lines


def test_the_bundled_half_precision_weights_still_load(capsys):
    code, _ = run(["reply", "--strategy", "greedy", "hello"], capsys)
    assert code == 0


@pytest.mark.parametrize("section", ["train", "best", "lineage"])
def test_a_config_section_that_is_not_an_object_is_one_line(section, overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)
    config = json.loads((model / "config.json").read_text())
    config[section] = [1]
    (model / "config.json").write_text(json.dumps(config))
    db = tmp_path / "log.db"
    from chatbot.storage import Storage

    store = Storage(db)
    conversation = store.new_conversation()
    user = store.add_message(conversation, "user", "hi")
    store.correct(store.add_message(conversation, "bot", "what", reply_to=user), "hello there")
    store.close()
    code, lines = run(["retrain", "--db", str(db), "--model", str(model), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and len(lines) == 1 and f"'{section}' must be a JSON object" in lines[0], lines


@pytest.mark.parametrize(
    "gates, said",
    [
        ('{"near": NaN}', "must be a number from -1 to 1"),
        ('{"near": 1e309}', "must be a number from -1 to 1"),
        ('{"start": "high"}', "must be a number from -1 to 1"),
        ('{"alone": -Infinity}', "must be a number from -1 to 1"),
        ('{"near": 0.9, "same": 0.8}', "'near' must be below 'same'"),
        ('{"near": 0.85}', "'near' and 'same' go together"),
    ],
)
def test_taught_gates_that_are_not_cosines_are_one_line(gates, said, overfit_dir, tmp_path, capsys):
    model = model_copy(overfit_dir, tmp_path)
    text = (model / "config.json").read_text().rstrip()
    (model / "config.json").write_text(text[:-1] + f', "taught": {gates}}}')
    code, lines = run(["reply", "--model", str(model), "--strategy", "greedy", "hello"], capsys)
    assert code == 1 and len(lines) == 1 and said in lines[0], lines


def explain(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatbot", "explain", *argv], capture_output=True, timeout=180)


def undecodable(text: bytes) -> str:
    return text.decode("utf-8", "surrogateescape")


def test_explain_takes_undecodable_arguments_and_refuses_steps_out_of_range(overfit_dir):
    model = ["--model", str(overfit_dir), "--strategy", "greedy", "--threads", "1"]
    result = explain("hi there", *model, "--reply", undecodable(b"\xff bad"))
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr[-500:]
    result = explain("hi there", *model, "--force", undecodable(b"1=\xff"))
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1, result.stderr[-500:]
    for step in ("0", "99999999999999999999", "-1", "٣"):
        result = explain("hi there", *model, f"--force={step}=▁hello")
        assert result.returncode == 1 and b"STEP=PIECE" in result.stderr, (step, result.stderr[-300:])
        assert result.stderr.count(b"\n") == 1


def test_a_lone_surrogate_or_a_huge_number_in_a_conversation_line_costs_that_line_only(overfit_dir):
    lines = [
        json.dumps(["hi there"]),
        '["\\ud800"]',
        '["\\udfff", "hi there"]',
        "[" + HUGE + "]",
        json.dumps(["hello! how are you today?"]),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "reply", "--model", str(overfit_dir), "--conversations"]
        + ["--strategy", "greedy", "--threads", "1"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout.splitlines()
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(out) == 5 and out[0] and out[2] and out[4] and out[3] == "", out
    assert "line 4 is not JSON" in result.stderr
