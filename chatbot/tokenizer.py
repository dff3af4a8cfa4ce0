"""SentencePiece tokenizer with fixed special ids, trained by the project on its own corpus.

Byte fallback is on, so any character (an emoji, Korean typed to an English model) is encoded
without the unknown token, and a model keeps its tokenizer when retrained on other text.

A conversation is read as one source: its last turns, each after a piece that says who spoke,
`<you>` for the person the model answers and `<me>` for the model's own turns (`dialog`). Those
pieces are control symbols: no text ever encodes to them, so a message cannot fake a turn.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from chatbot.errors import ChatbotError
from chatbot.i18n import tr

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPEAKERS = ("<you>", "<me>")  # ids 4 and 5 in a tokenizer trained since conversations were read whole


# bytes a reply never writes: control characters (C0 and DEL) and those that begin no valid UTF-8
# character (C0, C1: overlong; F5-FF: beyond U+10FFFF)
NEVER_BYTES = frozenset([*range(0x20), 0x7F, 0xC0, 0xC1, *range(0xF5, 0x100)])


def utf8_length(lead: int) -> int:
    """How many bytes a UTF-8 character has, from its first byte (1 for a stray continuation)."""
    for size, (mask, pattern) in ((2, (0xE0, 0xC0)), (3, (0xF0, 0xE0)), (4, (0xF8, 0xF0))):
        if lead & mask == pattern:
            return size
    return 1


def keep_end(ids: list[int], limit: int) -> list[int]:
    """A message's piece ids cut to `limit`, keeping the end (what a reply answers is mostly at
    the end of a message); a message of nothing at all is one EOS."""
    return ids[-limit:] or [EOS]


class Tokenizer:
    """Text to ids and back, with pad 0, unk 1, bos 2, eos 3."""

    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self._never_written: list[int] | None = None
        self._inside: list[bool] | None = None
        self._names: list[bool] | None = None
        self._marks: list[bool] | None = None
        self._bytes: list[int] | None = None
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception:
            raise ChatbotError(tr("tokenizer model is corrupt (not a SentencePiece model)")) from None
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD, UNK, BOS, EOS):
            raise ChatbotError(
                tr("tokenizer has special ids {ids}, expected (pad, unk, bos, eos) = (0, 1, 2, 3)", ids=ids)
            )

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            return cls.from_bytes(Path(path).read_bytes(), path)
        except FileNotFoundError:
            raise ChatbotError(tr("{path}: no tokenizer model there", path=path)) from None
        except OSError as err:
            raise ChatbotError(
                tr("{path}: cannot read ({strerror})", path=path, strerror=err.strerror or err)
            ) from None

    @classmethod
    def from_bytes(cls, proto: bytes, path: str | Path) -> Tokenizer:
        """A tokenizer from a file's bytes; `path` names the file in errors."""
        try:
            return cls(proto)
        except ChatbotError as err:
            raise ChatbotError(tr("{path}: {reason}", path=path, reason=err)) from None

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    @property
    def speakers(self) -> tuple[int, int] | None:
        """The ids of `<you>` and `<me>`, or None for a tokenizer without them (a model that reads
        the message alone)."""
        ids = tuple(self.sp.piece_to_id(piece) for piece in SPEAKERS)
        return None if UNK in ids else ids

    def never_written(self) -> list[int]:
        """Pieces no reply may contain: padding, unknown, start, the speaker marks, and the byte
        pieces of control characters (a terminal would act on them: ESC starts a command) and of
        bytes that begin no valid UTF-8 character (found once: asking SentencePiece of every piece
        costs more than a short greedy reply)."""
        if self._never_written is None:
            sp, n, values = self.sp, self.vocab_size, self.byte_values()
            self._never_written = [
                i for i in range(n) if i != EOS and (sp.is_control(i) or sp.is_unknown(i) or values[i] in NEVER_BYTES)
            ]
        return list(self._never_written)

    def word_inside(self) -> list[bool]:
        """Per piece id, whether it goes on a word rather than starting one: no leading "▁", a
        letter or digit first ("x" of "▁Re x"), not a byte, control or unknown piece."""
        if self._inside is None:
            sp = self.sp
            self._inside = [
                not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)) and sp.id_to_piece(i)[:1].isalnum()
                for i in range(self.vocab_size)
            ]
        return self._inside

    def word_marks(self) -> list[bool]:
        """Per piece id, whether it goes on a word with two characters or more ("ron" of "▁To ron to"):
        a piece that tells which word it came from, where one letter ("s") goes on any."""
        if self._marks is None:
            self._marks = [inside and len(self.sp.id_to_piece(i)) >= 2 for i, inside in enumerate(self.word_inside())]
        return self._marks

    def byte_values(self) -> list[int]:
        """Per piece id, the byte a byte piece stands for ("<0xEB>": 0xEB), else -1: how a
        character the tokenizer never learned is spelled out, in UTF-8."""
        if self._bytes is None:
            sp = self.sp
            self._bytes = [int(sp.id_to_piece(i)[3:5], 16) if sp.is_byte(i) else -1 for i in range(self.vocab_size)]
        return self._bytes

    def name_starts(self) -> list[bool]:
        """Per piece id, whether it starts a word with a capital letter ("▁Sam", "▁Lis"): where a
        name begins."""
        if self._names is None:
            pieces = (self.sp.id_to_piece(i) for i in range(self.vocab_size))
            self._names = [p.startswith("▁") and p[1:2].isupper() for p in pieces]
        return self._names

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in ids if i > EOS])

    def byte_share(self, ids: Iterable[int]) -> float:
        """The share of `ids` that are byte pieces: characters this tokenizer never saw in training
        (another script, say), spelled out byte by byte. Near 1, a model has learned nothing of
        that text, and perplexities measured on it mean nothing."""
        ids = list(ids)
        return sum(self.sp.is_byte(i) for i in ids) / len(ids) if ids else 0.0

    def complete(self, ids: list[int]) -> list[int]:
        """`ids` without the byte pieces at their end that do not finish a character: a reply cut
        at its length limit never ends in half a character (shown as U+FFFD)."""
        values, end = self.byte_values(), len(ids)
        while end and values[ids[end - 1]] >= 0:
            end -= 1
        tail = [values[i] for i in ids[end:]]
        keep, at = end, 0
        while at < len(tail):  # whole UTF-8 characters: a lead byte and its continuation bytes
            size = utf8_length(tail[at])
            if at + size > len(tail):
                break
            at += size
            keep = end + at
        return ids[:keep]

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Readable pieces for display (attention heatmaps): '▁' marks a word start."""
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def dialog(
        self, message: str, context: Sequence[str] = (), turns: int = 0, mine: Sequence[bool] | None = None
    ) -> list[int]:
        """The pieces a model reads for `message`: with `turns` > 0, the last `turns` turns of
        `context` (oldest first) and the message, each after its speaker's mark (`join_turns`);
        with 0, or without marks, the message alone. `mine`: for each context turn, whether the
        model said it (default: the turns alternate, as in a two-person conversation)."""
        if not turns or self.speakers is None:
            return self.encode(message)
        recent = list(context)[-turns:]
        said = None if mine is None else [*list(mine)[len(mine) - len(recent) :], False]
        return self.join_turns([self.encode(t) for t in [*recent, message]], said)

    def join_turns(self, turns: list[list[int]], mine: Sequence[bool] | None = None) -> list[int]:
        """Encoded turns, oldest first, as one source, each after its speaker's mark: `<me>` where
        `mine` says the model said it, else `<you>`; without `mine`, counting back from the last
        turn (the message replied to, `<you>`'s), `<me>`, `<you>`, ... in turn."""
        you, me = self.speakers
        if mine is None:
            mine = [(len(turns) - 1 - i) % 2 == 1 for i in range(len(turns))]
        ids = []
        for turn, by_me in zip(turns, mine):
            ids += [me if by_me else you, *turn]
        return ids


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, max_sentences: int = 2_000_000, speakers: bool = True
) -> Tokenizer:
    """Train a unigram model in memory.

    Character coverage 1.0 keeps every character seen in training (every Korean syllable of a
    Korean corpus) as a piece; unseen characters fall back to bytes. `hard_vocab_limit=False`
    lets a small corpus get a smaller vocabulary instead of an error.
    """
    model = io.BytesIO()
    try:
        _train(texts, model, vocab_size, max_sentences, SPEAKERS if speakers else ())
    except RuntimeError as err:
        reason = str(err).splitlines()[0].split("] ")[-1]
        raise ChatbotError(tr("cannot train the tokenizer: {reason}", reason=reason)) from None
    return Tokenizer(model.getvalue())


def _train(texts: Iterable[str], model: io.BytesIO, vocab_size: int, max_sentences: int, controls=()) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        control_symbols=list(controls),
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
