import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.errors import ChatbotError
from chatbot.tokenizer import BOS, EOS, PAD, UNK, Tokenizer


def test_special_ids_are_fixed(tokenizer):
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    "text", ["hello! how are you today?", "안녕하세요! 오늘 기분이 어때요?", "i am 42, you are 7."]
)
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", ["🙂 emoji", "ÆØÅ ñ ç", "日本語のテキスト", "Ω≈ç√∫"])
def test_unseen_characters_fall_back_to_bytes_not_unknown(tokenizer, text):
    ids = tokenizer.encode(text)
    assert UNK not in ids
    assert tokenizer.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P")), max_size=40))
def test_round_trip_on_ordinary_text(tokenizer, words):
    text = " ".join(words.split())
    import unicodedata

    if unicodedata.normalize("NFKC", text) != text:
        return  # SentencePiece normalises compatibility forms (e.g. full-width letters) by design
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_save_and_load(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "t.model")
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.encode("good morning") == tokenizer.encode("good morning")


def test_corrupt_tokenizer_file(tmp_path):
    (tmp_path / "t.model").write_bytes(b"not a model")
    with pytest.raises(ChatbotError, match="corrupt"):
        Tokenizer.load(tmp_path / "t.model")
