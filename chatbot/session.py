"""A chat session without a screen: model, decoding settings and the log, and the rules that tie
them (log the message before decoding, log the reply before it is final). The Textual app drives
one; tests can too.

Importing this module does not import torch: the chat opens its screen and log first, and loads
torch and the model (`Session.load`, a few seconds) while the user starts typing."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.settings import MAX_SEED, STRATEGIES, Settings
from chatbot.storage import Storage
from chatbot.tokenizer import EOS, Tokenizer

if TYPE_CHECKING:
    import torch

    from chatbot.decoding import Reply
    from chatbot.engine import Engine

STRATEGY_ORDER = ("greedy", "beam", "sample")


class Cancelled(Exception):
    """Raised inside decoding when the user cancels a reply in progress."""


@dataclass
class Exchange:
    """What one user message produced: ids of the logged rows and the reply itself."""

    user_id: int | None
    bot_id: int | None
    reply: Reply
    inside: dict | None  # attention and probabilities, as the attention screen shows them
    context: list[str] = field(default_factory=list)  # the earlier turns the model read with the message
    model_path: str = ""  # the model that replied: the session's, or the bundled one of the message's language
    source_limit: int = 0  # the most message pieces that model reads
    decoding: dict = field(default_factory=dict)  # how it was decoded, as logged (`logged_decoding`)


@dataclass
class Turn:
    """One message of the current conversation, as replies read it."""

    id: int | None  # its row in the log (None without a log)
    role: str  # "user" or "bot"
    text: str

    def matches(self, message_id: int | None, text: str) -> bool:
        return self.role == "user" and (self.id == message_id if message_id is not None else self.text == text)


@dataclass
class Session:
    model: Engine | None  # what replies run (`chatbot.engine`); None until `load` has run
    tokenizer: Tokenizer | None
    model_path: str
    storage: Storage | None  # None: --no-log
    device: torch.device | None
    settings: dict[str, Settings] = field(default_factory=lambda: {name: cls() for name, cls in STRATEGIES.items()})
    strategy: str = "greedy"
    conversation_id: int | None = None
    precision: str = "fp32"  # how the weights are held (`load_engine`); another model is loaded the same way
    reference: bool = False  # reply through the model's own modules (`--reference`)
    turns: list[Turn] = field(default_factory=list)  # the current conversation, oldest first
    companions: dict[str, tuple] = field(default_factory=dict)  # language -> (engine, tokenizer, path) beside `model`
    companion_paths: dict[str, Path] = field(default_factory=dict)  # language -> a model loaded at its first message
    _companion_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    taught: bool = True  # follow what the log's corrections and good ratings taught (`chatbot.taught`)
    memories: dict = field(default_factory=dict, repr=False)  # model path -> its `chatbot.taught.Memory`
    _memory_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    loaded: threading.Event = field(default_factory=threading.Event, repr=False)  # set once `load` has ended
    load_error: str | None = None

    def load(self, device: str = "auto", precision: str = "auto", threads: int | None = None) -> None:
        """Import torch and load the model: the slow part of opening a chat."""
        try:
            from chatbot.device import reply_precision, resolve_device, set_threads

            set_threads(threads)
            dev = resolve_device(device)
            self.precision = reply_precision(precision, dev, self.reference)
            self._open_model(Path(self.model_path), dev)
        except Exception as err:
            self.load_error = str(err) or type(err).__name__
            raise
        finally:
            self.loaded.set()

    def _open_model(self, directory: Path, device: torch.device) -> None:
        """Load a model directory the session's way, with the bundled models of other languages
        that answer beside it (`chatbot.languages`), and record it in the log."""
        from chatbot.languages import bundled_companions

        model, tokenizer = self._load_engine(directory, device)
        self.model, self.tokenizer, self.model_path, self.device = model, tokenizer, str(directory), device
        self.companions, self.companion_paths = {}, bundled_companions(directory)  # loaded when first needed
        if self.storage is not None:
            self.storage.register_model(str(directory))

    def _load_engine(self, directory: Path, device: torch.device):
        """(engine, tokenizer), warmed up: one short reply per strategy, with its default settings
        (the user's own may not allow a 4-token reply), so that the first real reply does not pay
        for the kernels' first-call setup, which made it several times as slow as the next one."""
        from chatbot.decoding import reply
        from chatbot.engine import load_engine

        model, tokenizer, _ = load_engine(directory, device, self.precision, reference=self.reference)
        for settings in STRATEGIES.values():
            reply(model, tokenizer, ["hello"], settings(max_length=4))
        return model, tokenizer

    def replier_for(self, text: str) -> tuple:
        """(engine, tokenizer, model path) that answers `text`: the session's model, or the bundled
        model of the message's language beside it."""
        from chatbot.languages import language_of

        lang = language_of(text)
        if lang not in self.companion_paths:
            return self.model, self.tokenizer, self.model_path
        with self._companion_lock:  # loaded once, at the first message in its language: no memory for the rest
            if lang not in self.companions:
                path = self.companion_paths[lang]
                self.companions[lang] = (*self._load_engine(path, self.device), str(path))
        return self.companions[lang]

    def memory_for(self, engine, tokenizer, model_path: str, before: str | None = None):
        """What the log taught, as `engine` reads it (`chatbot.taught.Memory`): the corrections and
        good ratings of the messages this model answers, built from the log when first needed
        after a change; None when teaching is off or nothing was taught. `before` (a time): only
        what was taught by then, as a reply decoded then saw it (the walk-through's)."""
        if not self.taught or self.storage is None:
            return None
        from chatbot.modeldir import read_config
        from chatbot.taught import memory_from_log

        def build(rows):
            config = read_config(model_path)  # what retraining made this model say alone; its gates
            answered = [r for r in rows if self.replier_path(r["message"]) == model_path]
            return memory_from_log(engine, tokenizer, answered, config)

        if before is not None:
            return build([r for r in self.storage.taught() if (r["taught_at"] or "") <= before])
        with self._memory_lock:
            if model_path not in self.memories:
                self.memories[model_path] = build(self.storage.taught())
            return self.memories[model_path]

    def replier_path(self, text: str) -> str:
        """The model that answers `text`: the session's, or the bundled model of its language."""
        from chatbot.languages import language_of

        lang = language_of(text)
        return str(self.companion_paths[lang]) if lang in self.companion_paths else self.model_path

    def taught_changed(self) -> None:
        """A correction or rating was saved: every memory is rebuilt from the log when next needed."""
        self.memories = {}

    def wait_until_loaded(self) -> None:
        self.loaded.wait()
        if self.load_error is not None:
            raise ChatbotError(tr("the model did not load: {load_error}", load_error=self.load_error))

    @property
    def current(self) -> Settings:
        return self.settings[self.strategy]

    def cycle_strategy(self) -> str:
        self.strategy = STRATEGY_ORDER[(STRATEGY_ORDER.index(self.strategy) + 1) % len(STRATEGY_ORDER)]
        return self.strategy

    def update_setting(self, strategy: str, name: str, raw: str) -> None:
        """Parse and validate one setting typed as text; a bad value raises ChatbotError and changes nothing."""
        self.settings[strategy] = self.settings[strategy].with_text_value(name, raw)

    def describe(self) -> str:
        return self.describe_settings(self.current)

    @staticmethod
    def describe_settings(s: Settings) -> str:
        """The settings that tell the strategies apart, short enough for an 80-column status line."""
        from chatbot.i18n import t

        guided = t("status.guidance", guidance=f"{s.guidance:g}") if s.guidance else ""
        if s.name == "beam":
            return t("status.beam", beam_size=s.beam_size, alpha=f"{s.length_penalty:g}") + guided
        if s.name == "sample":
            top_k = t("status.top_k", top_k=s.top_k) if s.top_k else ""
            best_of = t("status.candidates", candidates=s.candidates) if s.candidates > 1 else ""
            sampled = t("status.sample", temperature=f"{s.temperature:g}", top_k=top_k, top_p=f"{s.top_p:g}")
            return sampled + best_of + guided
        return t("status.greedy", max_length=s.max_length) + guided

    def switch_model(self, directory: Path) -> None:
        """Load another model directory; the next replies record it."""
        self.wait_until_loaded()
        self._open_model(Path(directory), self.device)

    # conversations

    def ensure_conversation(self, first_message: str) -> int | None:
        if self.storage is None:
            return None
        if self.conversation_id is None:
            title = " ".join(first_message.split())[:60] or "New conversation"
            self.conversation_id = self.storage.new_conversation(title)
        return self.conversation_id

    def new_conversation(self) -> None:
        self.conversation_id, self.turns = None, []

    def resume(self, conversation_id: int) -> list[dict]:
        """Make a logged conversation the current one; its messages, oldest first."""
        rows = self.storage.messages(conversation_id)
        self.conversation_id = conversation_id
        self.turns = [Turn(r["id"], r["role"], r["text"]) for r in rows]
        return rows

    def log_user(self, text: str) -> int | None:
        """Commit the user's message before any decoding starts."""
        conversation = self.ensure_conversation(text)
        message_id = self.storage.add_message(conversation, "user", text) if self.storage else None
        self.turns.append(Turn(message_id, "user", text))
        return message_id

    def add_reply_turn(self, turn: Turn, user_id: int | None, text: str) -> None:
        """A reply goes right after its message, before any message sent while it was written:
        a queued message then reads the reply before it, as the person saw the conversation."""
        at = next((i for i in range(len(self.turns) - 1, -1, -1) if self.turns[i].matches(user_id, text)), None)
        self.turns.insert(len(self.turns) if at is None else at + 1, turn)

    def context_of(self, text: str, user_id: int | None, model=None) -> list[Turn]:
        """The turns before a message in its conversation, as `model` (default: the session's)
        reads them: the last `context_turns` (none for a model that reads the message alone). Where
        each language has its own model, only the turns in the message's language: another's are
        pieces its model never learned."""
        from chatbot.languages import language_of

        model = model or self.model
        n = model.cfg.context_turns if model is not None else 0
        at = next((i for i in range(len(self.turns) - 1, -1, -1) if self.turns[i].matches(user_id, text)), None)
        if not n or at is None:
            return []
        earlier = self.turns[:at]
        if self.companion_paths:
            lang = language_of(text)
            earlier = [t for t in earlier if language_of(t.text) == lang]
        return earlier[-n:]

    def respond(
        self,
        text: str,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        user_id: int | None = None,
        settings: Settings | None = None,
        inspect: bool = True,
        conversation_id: int | None = None,
        log: bool = True,
    ) -> Exchange:
        """Decode a reply to `text` (streamed through `on_text`), reading the turns before it in the
        conversation, then commit it to the log with the ids of those turns, in `conversation_id`
        (default: the current conversation; a reply still being written when the person opens
        another conversation belongs to the one its message was sent in). `inspect=False` skips
        building the inside view, and `log=False` logging (a reply that is only compared)."""
        settings = settings or self.current
        if getattr(settings, "seed", 0) is None:  # a fresh draw, recorded with the reply so it can be replayed
            settings = replace(settings, seed=secrets.randbelow(MAX_SEED + 1))
        conversation_id = conversation_id if conversation_id is not None else self.conversation_id

        def stream(_: int, partial: str) -> None:
            if cancelled and cancelled():
                raise Cancelled()
            if on_text:
                on_text(partial)

        self.wait_until_loaded()
        from chatbot.decoding import reply  # torch: imported by `load`

        model, tokenizer, model_path = self.replier_for(text)
        context = self.context_of(text, user_id, model)
        taught = self.memory_for(model, tokenizer, model_path)
        start = time.perf_counter()
        result = reply(
            model, tokenizer, [text], settings, on_text=stream, contexts=[[t.text for t in context]],
            mine=[[t.role == "bot" for t in context]], gains=inspect, taught=taught,
        )[0][0]  # fmt: skip
        result.seconds = time.perf_counter() - start
        bot_id, inside = None, inside_view(tokenizer, result) if inspect else None
        decoding = logged_decoding(result, self.precision)
        if log and self.storage is not None and user_id is not None:
            bot_id = self.storage.add_message(
                conversation_id,
                "bot",
                result.text,
                model=model_path,
                decoding=decoding,
                latency_ms=round(result.seconds * 1000, 2),
                score=result.score,
                attention=inside,
                reply_to=user_id,
                context=[t.id for t in context if t.id is not None],
            )
        if log and conversation_id == self.conversation_id:
            self.add_reply_turn(Turn(bot_id, "bot", result.text), user_id, text)
        context_texts = [t.text for t in context]
        limit = model.cfg.max_source_tokens
        return Exchange(user_id, bot_id, result, inside, context_texts, model_path, limit, decoding)


def logged_decoding(result: Reply, precision: str) -> dict:
    """How a reply was decoded, as the log keeps it: the settings (a sampled reply's seed
    included), the weights' precision and, for consensus sampling, the chosen reply's agreement."""
    decoding = {**result.settings, "precision": precision, "taught": result.taught is not None}
    if result.agreement is not None:
        decoding["agreement"] = round(result.agreement, 4)
    return decoding


def inside_view(tokenizer: Tokenizer, result: Reply) -> dict:
    """What the attention screen shows, stored with the reply so past replies can be inspected."""
    reply_ids = result.tokens + ([EOS] if result.finished else [])
    return {
        "source_pieces": tokenizer.pieces(result.source_tokens),
        "reply_pieces": tokenizer.pieces(reply_ids),
        "weights": [[round(w, 4) for w in row] for row in result.attention],
        "token_logprobs": [round(p, 4) for p in result.token_logprobs],
        "alternatives": [[[tokenizer.pieces([i])[0], round(p, 4)] for i, p in step] for step in result.alternatives],
        # log p(piece | message) - log p(piece | no message), where the model can tell
        "gains": [round(g, 4) for g in result.gains] if result.gains else None,
        # per piece, the taught reply that weighed in (weight, its id), where one did
        "taught": result.taught,
    }


def open_session(
    model_dir: Path,
    db: Path | None,
    no_log: bool,
    device: str,
    strategy: str,
    settings: Settings | None,
    precision: str = "fp32",
    threads: int | None = None,
    load: bool = True,
) -> Session:
    """A session on `model_dir`, logging to `db` (the default log unless `no_log`). With `load`
    False the model is not loaded yet: call `session.load(device, precision, threads)` later."""
    from chatbot.modeldir import check_model_files

    check_model_files(model_dir)  # a missing or unreadable model is refused before anything opens
    storage = None
    if not no_log:
        from chatbot.storage import default_db_path

        storage = Storage(db or default_db_path())
    session = Session(None, None, str(model_dir), storage, None, strategy=strategy)
    if settings is not None:
        session.settings[strategy] = settings
    if load:
        session.load(device, precision, threads)
    return session
