"""Making a bundled model (`training.bundle`): the real script on the tiny model and its own pairs."""

from __future__ import annotations

import json
import math
import sys

from chatbot.decoding import reply
from chatbot.engine import load_engine
from chatbot.settings import settings_from
from tests.conftest import write_tsv
from training import bundle


def test_a_bundled_model_replies_as_it_was_trained_and_its_card_has_every_figure(
    overfit_dir, sample_pairs, tmp_path, monkeypatch
):
    corpus = write_tsv(tmp_path / "thirty.tsv", sample_pairs[:30])
    probes = tmp_path / "probes.jsonl"
    probes.write_text(
        "\n".join(
            json.dumps(p)
            for p in (
                {"kind": "memory", "turns": ["my name is Sam.", "nice!", "what is my name?"], "must_match": "sam"},
                {"kind": "mood-good", "turns": ["I passed my exam!"], "must_not_match": "sorry"},
            )
        )
        + "\n"
    )
    out = tmp_path / "bundled"
    argv = ["bundle", "--model", str(overfit_dir), "--command", "chatbot train (tiny)", "--out", str(out)]
    argv += ["--corpus", str(corpus), "--before", str(overfit_dir), "--threads", "1", "--probes", str(probes)]
    monkeypatch.setattr(sys, "argv", argv)
    bundle.main()

    figures = json.loads((out / "figures.json").read_text())
    assert math.isfinite(figures["word_ppl"]) and figures["pairs"] == 30
    assert 0 <= figures["hits_at_1"]["chat"] <= 1
    assert set(figures["probes"]) == set(bundle.PROBED)
    assert all(0 <= f["probes_all"] <= 1 and f["probes_count"] == 2 for f in figures["probes"].values())

    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    ppl = next(line for line in card.splitlines() if line.startswith("| word-level perplexity, with context"))
    assert ppl.count(f"{figures['word_ppl']:.2f}") == 2  # this model's and the one before's: the same weights
    assert "## Behavioural probes (2 of" in card and "| greedy | memory |" in card
    assert card.count("| this | greedy |") == 2 and card.count("| before | sample |") == 2
    assert "chatbot train (tiny)" in card and "--before-figures" not in card

    stored = (out / "model.safetensors").stat().st_size
    assert stored < (overfit_dir / "model.safetensors").stat().st_size  # float16
    greedy = settings_from("greedy")
    original, tokenizer, _ = load_engine(overfit_dir, precision="fp32")
    bundled, _, _ = load_engine(out, precision="fp32")
    for pair in sample_pairs[:5]:
        said = [reply(e, tokenizer, [pair.source], greedy)[0][0].text for e in (bundled, original)]
        assert said[0] == said[1] == pair.reply  # float16 weights say what the model knew by heart
