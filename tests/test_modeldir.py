import subprocess
import sys

import pytest
import torch

from chatbot.errors import ChatbotError
from chatbot.modeldir import load_model, load_training_state, save_model
from training.data import collate, encode_pairs


def outputs(model, tokenizer, pairs):
    batch = collate(encode_pairs(pairs, tokenizer, 64, 48))
    with torch.no_grad():
        return model(batch.src, batch.src_lengths, batch.tgt_in)[0]


def test_save_then_load_gives_identical_outputs(random_model, tokenizer, sample_pairs, tmp_path):
    save_model(tmp_path, random_model, tokenizer)
    model, tok, config = load_model(tmp_path)
    assert torch.equal(outputs(random_model, tokenizer, sample_pairs[:4]), outputs(model, tok, sample_pairs[:4]))
    assert config["model"]["hidden_size"] == random_model.cfg.hidden_size


def test_tied_model_loads_with_one_shared_matrix(tokenizer, sample_pairs, tmp_path):
    from chatbot.model import ModelConfig, Seq2Seq

    torch.manual_seed(0)
    tied = Seq2Seq(
        ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=24, hidden_size=32, tie_embeddings=True)
    ).eval()
    save_model(tmp_path, tied, tokenizer)
    model, tok, _ = load_model(tmp_path)
    assert model.out.weight is model.embedding.weight
    assert torch.equal(outputs(tied, tokenizer, sample_pairs[:4]), outputs(model, tok, sample_pairs[:4]))


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "tokenizer.model"])
def test_missing_or_corrupt_file_is_one_clear_error(random_model, tokenizer, tmp_path, victim):
    save_model(tmp_path, random_model, tokenizer)
    (tmp_path / victim).unlink()
    with pytest.raises(ChatbotError, match=victim.replace(".", r"\.")):
        load_model(tmp_path)
    (tmp_path / victim).write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ChatbotError) as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value)


def test_tokenizer_model_mismatch(random_model, tokenizer, tmp_path, sample_pairs):
    from chatbot.tokenizer import train_tokenizer

    save_model(tmp_path, random_model, tokenizer)
    other = train_tokenizer([p.reply for p in sample_pairs], vocab_size=500)
    other.save(tmp_path / "tokenizer.model")
    with pytest.raises(ChatbotError, match="pieces but the model expects"):
        load_model(tmp_path)


def test_training_state_is_never_unpickled(tmp_path):
    """A pickle that would run code on load must be refused, and the code must not run."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "train_state.pt"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, evil)
    with pytest.raises(ChatbotError, match="corrupt training state"):
        load_training_state(evil)
    assert not marker.exists()


def test_cli_reports_bad_model_dir_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "evaluate", "--model", str(tmp_path), "--corpus", "sample"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bf16_weights_reply_like_fp32(overfit_dir, sample_pairs):
    """Replying with weights in bf16 (half the bytes to read per step) keeps the memorised replies."""
    from chatbot.decoding import GreedySettings, reply

    fp32, tokenizer, _ = load_model(overfit_dir)
    bf16, _, _ = load_model(overfit_dir, precision="bf16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    messages = [p.source for p in sample_pairs[:8]]
    for dtype_replies in (
        reply(fp32, tokenizer, messages, GreedySettings()),
        reply(bf16, tokenizer, messages, GreedySettings()),
    ):
        assert [r[0].text for r in dtype_replies] == [p.reply for p in sample_pairs[:8]]


def test_cli_reply_in_bf16(overfit_dir, sample_pairs):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot",
            "reply",
            "--model",
            str(overfit_dir),
            "--precision",
            "bf16",
            "--threads",
            "1",
            "--strategy",
            "greedy",
            sample_pairs[0].source,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sample_pairs[0].reply


def test_cli_reply_into_a_closed_pipe_stops_without_a_traceback(overfit_dir, sample_pairs):
    """`chatbot reply --json < messages | head -c 100`: the reader leaves long before the replies end."""
    messages = (
        "".join(p.source + "\n" for p in sample_pairs[:20]) * 20
    )  # ~400 replies with attention: far past a pipe's buffer
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "reply", "--model", str(overfit_dir), "--threads", "1", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(messages.encode())
    proc.stdin.close()
    assert proc.stdout.read(100)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) != 0 and "Traceback" not in stderr, stderr


def test_bundled_model_loads_and_replies():
    """The model `make chat` opens: its files fit together, and it answers with float and int8 weights."""
    from chatbot.decoding import GreedySettings, reply
    from chatbot.engine import load_engine
    from chatbot.paths import BUNDLED_MODEL

    for precision in ("fp32", "int8"):
        model, tokenizer, config = load_engine(BUNDLED_MODEL, precision=precision)
        assert config["parameters"] == sum(p.numel() for p in load_model(BUNDLED_MODEL)[0].parameters())
        assert reply(model, tokenizer, ["hi, how are you?"], GreedySettings())[0][0].text.strip()


def test_a_model_directory_from_before_context_and_guidance_reads_the_message_alone(random_model, tokenizer, tmp_path):
    import json

    save_model(tmp_path, random_model, tokenizer)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("context_turns", "unconditional"):
        del config["model"][key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model, _, _ = load_model(tmp_path)
    assert model.cfg.context_turns == 0 and model.cfg.unconditional is False
