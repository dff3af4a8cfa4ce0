"""`chatbot reply` is a filter: each line is answered as soon as it arrives, in bounded memory,
whatever the input's length; what it prints cannot drive a terminal. `chatbot chat` without a
terminal says to use it instead."""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import subprocess
import sys
import textwrap

import pytest

from chatbot.cli import print_reply
from chatbot.decoding import GreedySettings, reply

THREADS = os.environ.get("CHATBOT_TEST_THREADS", "2")


def read_line(stream, seconds: float) -> str | None:
    """One line of `stream` within `seconds`, or None."""
    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline().decode() if ready else None


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_each_line_is_answered_before_the_next_is_written(strategy, overfit_dir, sample_pairs):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "reply", "--model", str(overfit_dir), "--strategy", strategy]
        + ["--threads", THREADS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for pair in sample_pairs[:3]:
            proc.stdin.write(pair.source.encode() + b"\n")
            proc.stdin.flush()  # and the pipe stays open: the answer must come without its end
            answer = read_line(proc.stdout, 120)
            assert answer is not None, proc.stderr.read1() if proc.poll() is not None else "no answer yet"
            assert answer.strip()
            if strategy == "greedy":  # the tiny model knows its pairs by heart
                assert answer.strip() == pair.reply
        proc.stdin.write(b"\n")  # an empty line: an empty answer, at once, and a note
        proc.stdin.flush()
        assert read_line(proc.stdout, 60) == "\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0 and b"line 4 is empty" in proc.stderr.read()


def test_a_hundred_thousand_lines_are_answered_in_bounded_memory(overfit_dir, tmp_path):
    """A generator writes 100,000 lines; the filter's peak resident memory stays under 1 GB."""
    script = tmp_path / "measure.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import resource, subprocess, sys
            reply = subprocess.Popen(
                [sys.executable, "-m", "chatbot", "reply", "--model", {str(overfit_dir)!r}, "--strategy", "greedy",
                 "--max-length", "2", "--batch-size", "256", "--threads", {THREADS!r}],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            import threading
            def feed():
                for i in range(100_000):
                    reply.stdin.write(b"hi there\\n")
                reply.stdin.close()
            threading.Thread(target=feed).start()
            lines = sum(1 for _ in reply.stdout)
            reply.wait()
            print(lines, reply.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    lines, code, peak_kb = map(int, result.stdout.split())
    assert code == 0 and lines == 100_000, result.stderr
    assert peak_kb < 1_000_000, f"{peak_kb / 1024:.0f} MB"


def test_control_characters_a_model_writes_are_shown_not_obeyed(overfit_model, capsys):
    model, tokenizer = overfit_model
    made = reply(model, tokenizer, ["hi there"], GreedySettings())[0][0]
    written = dataclasses.replace(made, text="\x1b[2Jcleared\x07 and\nsplit\x9b")
    print_reply(argparse.Namespace(json=False), ("hi there", []), [written], GreedySettings())
    out = capsys.readouterr().out
    assert out == "\\x1b[2Jcleared\\x07 and\\x0asplit\\x9b\n"


def test_the_chat_without_a_terminal_says_to_use_reply(overfit_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "chat", "--model", str(overfit_dir), "--db", str(tmp_path / "c.db")],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "chatbot: error: chat needs a terminal; use `chatbot reply` to answer lines of text"
    assert not (tmp_path / "c.db").exists()  # refused before the log is opened
