import math

import torch

from corpora import Pair
from training.evaluate import evaluate_pairs, reply_words


def test_word_level_perplexity_on_a_hand_computed_case(random_model, tokenizer):
    """With a zeroed output layer every token has probability 1/V, so NLL = tokens * log V."""
    with torch.no_grad():
        random_model.out.weight.zero_()
        random_model.out.bias.zero_()
    pairs = [Pair("hello", "hi there friend"), Pair("how are you?", "fine")]
    tokens = sum(len(tokenizer.encode(p.reply)) + 1 for p in pairs)  # reply pieces + EOS
    words = (3 + 1) + (1 + 1)
    result = evaluate_pairs(random_model, tokenizer, pairs)
    V = tokenizer.vocab_size
    assert result["words"] == words == reply_words(pairs)
    assert result["tokens"] == tokens
    assert math.isclose(result["word_ppl"], math.exp(tokens * math.log(V) / words), rel_tol=1e-5)
    assert math.isclose(result["token_ppl"], V, rel_tol=1e-5)
