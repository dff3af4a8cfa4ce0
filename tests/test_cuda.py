"""The CUDA path, run where torch sees a GPU (skipped elsewhere): the same model scores, decodes,
trains, resumes and serves a chat session on the GPU as it does on the CPU."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings

import pytest
import torch

from chatbot.decoding import BeamSettings, GreedySettings, SampleSettings, decode, reply
from chatbot.model import ModelConfig, Seq2Seq
from chatbot.modeldir import load_model
from chatbot.session import open_session

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 would round fp32 products to 10-bit mantissas on the GPU; the comparisons here are of fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def pair_of_models(seed: int, **changes) -> tuple[Seq2Seq, Seq2Seq]:
    torch.manual_seed(seed)
    cpu = Seq2Seq(ModelConfig(vocab_size=40, embedding_dim=16, hidden_size=24, layers=2, dropout=0.0, **changes)).eval()
    gpu = Seq2Seq(cpu.cfg).to(CUDA).eval()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


SOURCES = [[5, 6, 7], [8], [10, 11, 12, 13, 14, 15]]


@pytest.mark.parametrize("changes", [{}, {"input_feeding": True, "attention": "additive"}, {"output_rank": 8}])
def test_teacher_forced_scores_agree_with_the_cpu(changes):
    cpu, gpu = pair_of_models(1, **changes)
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    tgt_in = torch.tensor([[2, 11, 12], [2, 13, 0]])
    tgt_out = torch.tensor([[11, 12, 3], [13, 3, 0]])
    with torch.no_grad():
        on_cpu, targets = cpu.scored_logits(src, lengths, tgt_in, tgt_out)
        on_gpu, gpu_targets = gpu.scored_logits(*(t.to(CUDA) for t in (src, lengths, tgt_in, tgt_out)))
    assert on_gpu.device.type == "cuda"
    assert torch.equal(targets, gpu_targets.cpu())
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make", [lambda: GreedySettings(max_length=10), lambda: BeamSettings(beam_size=4, n_best=2, max_length=10)]
)
def test_greedy_and_beam_scores_equal_the_cpu_ones(make):
    """An untrained model's next-token choices are near-ties that rounding may tip either way, so
    its replies are compared by score (the trained model below is compared token by token)."""
    cpu, gpu = pair_of_models(2)
    on_cpu, on_gpu = decode(cpu, SOURCES, make()), decode(gpu, SOURCES, make())
    for a, b in zip(on_cpu, on_gpu):
        assert len(a) == len(b)
        for ha, hb in zip(a, b):
            assert math.isclose(ha.score, hb.score, rel_tol=1e-4, abs_tol=1e-4)


def test_seeded_sampling_on_the_gpu_repeats_itself_and_stays_in_bounds():
    _, gpu = pair_of_models(3)
    settings = SampleSettings(seed=5, temperature=1.3, top_k=20, top_p=0.9, max_length=7)
    first, second = decode(gpu, SOURCES, settings), decode(gpu, SOURCES, settings)
    assert [h[0].tokens for h in first] == [h[0].tokens for h in second]
    assert all(1 <= len(h[0].tokens) <= 7 for h in first)


@pytest.mark.parametrize(
    "make", [lambda: GreedySettings(max_length=48), lambda: BeamSettings(beam_size=5, max_length=48)]
)
def test_a_cpu_trained_model_replies_alike_on_the_gpu(overfit_dir, sample_pairs, make):
    messages = [p.source for p in sample_pairs[:30]]
    cpu_model, tokenizer, _ = load_model(overfit_dir)
    gpu_model, _, _ = load_model(overfit_dir, CUDA)
    assert next(gpu_model.parameters()).device.type == "cuda"
    assert [r[0].text for r in reply(gpu_model, tokenizer, messages, make())] == [
        r[0].text for r in reply(cpu_model, tokenizer, messages, make())
    ]


def test_moved_lstm_weights_are_packed_for_cudnn(overfit_dir):
    model, _, _ = load_model(overfit_dir, CUDA)
    lstms = [m for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    assert lstms
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "RNN module weights are not part of single contiguous chunk of memory"
        for lstm in lstms:
            lstm(torch.zeros(1, 2, lstm.input_size, device=CUDA))


def test_a_chat_session_on_the_gpu_logs_its_reply(overfit_dir, sample_pairs, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cuda", "beam", None)
    assert session.device.type == "cuda" and session.precision == "fp32"
    message = sample_pairs[0].source
    exchange = session.respond(message, user_id=session.log_user(message))
    assert exchange.reply.text == sample_pairs[0].reply
    logged = session.storage.db["messages"].get(exchange.bot_id)
    assert logged["text"] == exchange.reply.text


def test_auto_precision_on_the_gpu_is_tf32_from_ampere_on():
    from chatbot.device import resolve_precision

    expected = "tf32" if torch.cuda.get_device_capability()[0] >= 8 else "fp32"
    assert resolve_precision("auto", CUDA) == expected


def run_chatbot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True, timeout=600)


TRAIN = [
    "train",
    "--corpus",
    "sample",
    "--max-tokens",
    "600",
    "--embedding-dim",
    "32",
    "--hidden-size",
    "48",
    "--vocab-size",
    "600",
    "--eval-every",
    "10",
    "--device",
    "cuda",
    "--quiet",
    "--seed",
    "4",
]


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_training_on_the_gpu_resumes_and_its_model_loads_on_the_cpu(tmp_path, precision):
    out = tmp_path / "gpu"
    first = run_chatbot(*TRAIN, "--epochs", "2", "--precision", precision, "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_chatbot(*TRAIN, "--epochs", "4", "--precision", precision, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    model, tokenizer, config = load_model(out)  # saved from the GPU, read on the CPU
    assert config["train"]["device"] == "cuda" and config["train"]["epochs"] == 4
    assert reply(model, tokenizer, ["hello"], GreedySettings(max_length=5))[0][0].tokens


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per process")
def test_two_gpu_processes_train_in_step_with_nccl(tmp_path):
    out = tmp_path / "ddp"
    result = run_chatbot(*TRAIN, "--epochs", "1", "--nproc", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    digests = dict(re.findall(r"rank (\d)/2: step \d+, weights digest (\w+)", result.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    assert (out / "model.safetensors").exists() and not list(out.glob("*.tmp"))


async def test_the_chat_app_loads_onto_the_gpu_behind_its_screen_and_replies(overfit_dir, sample_pairs, tmp_path):
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.widgets import MessageView

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cuda", "greedy", None, load=False)
    app = ChatApp(session, load=("cuda", "auto", 1))
    pair = sample_pairs[5]
    async with app.run_test() as pilot:
        for _ in range(1200):  # the model loads in a thread of its own
            if "cuda fp32" in str(app.query_one("#status").render()):
                break
            await pilot.pause(0.05)
        assert session.device.type == "cuda" and "cuda fp32" in str(app.query_one("#status").render())
        app.query_one("#prompt").value = pair.source
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [(v.role, v.text) for v in app.query(MessageView)] == [("user", pair.source), ("bot", pair.reply)]
    session.storage.close()
