"""`chatbot train`: tokenizer, model and the training loop, with atomic checkpoints and resume.

The output directory is a model directory (config.json, model.safetensors holding the best
weights on validation, tokenizer.model) plus metrics.jsonl, training.png and train_state.pt,
the last checkpoint that `--resume` continues from.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from chatbot.device import autocast, resolve_device, resolve_precision, set_threads, use_precision
from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.model import ModelConfig, Seq2Seq
from chatbot.modeldir import TOKENIZER, WEIGHTS, atomic_write, load_training_state, read_config, save_model
from chatbot.tokenizer import PAD, Tokenizer, train_tokenizer
from corpora import Pair, load_pairs
from training.data import Batch, blank_sources, bucketed_batches, collate, encode_pairs, with_talk_before
from training.distributed import Distributed
from training.evaluate import reply_words, total_nll
from training.train_config import TRAIN_RANGES, TrainConfig  # noqa: F401 (re-exported)

STATE = "train_state.pt"
METRICS = "metrics.jsonl"


def split_pairs(corpus: str) -> tuple[list[Pair], list[Pair]]:
    """Training and validation pairs: the corpus's own splits (`corpora.load_pairs`)."""
    train, valid = load_pairs(corpus, "train"), load_pairs(corpus, "valid")
    if not train:
        raise ChatbotError(tr("{corpus}: no pairs to train on", corpus=corpus))
    return train, valid or train


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay over `progress` (0 to 1, by steps or by time)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def loss_on(
    model: Seq2Seq, batch: Batch, cfg: TrainConfig, device, precision: str, forward=None
) -> tuple[torch.Tensor, int]:
    with autocast(device, precision):
        logits, targets = model.scored_logits(*batch, forward=forward)
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
    return loss, targets.numel()


def anchored_loss(
    model: Seq2Seq, parent: Seq2Seq, batch: Batch, replayed: torch.Tensor, device, precision: str, forward=None
) -> tuple[torch.Tensor, int]:
    """Fine-tuning's loss: cross-entropy on the new pairs' pieces, and on the replayed pairs' the
    KL divergence from the parent model's distribution (Learning without Forgetting, Li & Hoiem
    2016): the replayed pairs keep all the parent said there, not one reply of it.
    replayed: (B,) which rows of the batch are replayed pairs."""
    with autocast(device, precision):
        logits, targets = model.scored_logits(*batch, forward=forward)  # (N, V), (N,)
        with torch.no_grad():
            parent_logits, _ = parent.scored_logits(*batch)
    rows = (batch.tgt_out != PAD).nonzero()[:, 0]  # (N,) the row of each real target piece
    old = replayed.to(rows.device)[rows]  # (N,)
    logp = logits.float().log_softmax(-1)
    new_loss = F.nll_loss(logp[~old], targets[~old], reduction="sum")
    kept = F.kl_div(logp[old], parent_logits[old].float().log_softmax(-1), log_target=True, reduction="sum")
    return (new_loss + kept) / targets.numel(), targets.numel()


def unlikelihood_on(model: Seq2Seq, batch: Batch, device, precision: str, forward=None) -> torch.Tensor:
    """Unlikelihood (Welleck et al. 2019; Li et al. 2020): the mean of -log(1 - p) over the pieces
    of replies the model should say less, each given its message and the pieces before it."""
    with autocast(device, precision):
        logits, targets = model.scored_logits(*batch, forward=forward)
    p = logits.float().softmax(-1).gather(1, targets[:, None]).squeeze(1)  # (N,)
    return -torch.log1p(-p.clamp(max=1 - 1e-6)).mean()


NEGATIVES_PER_STEP = 16  # bad replies in each step's unlikelihood term


class Trainer:
    """Holds everything a run needs, so a checkpoint is just `state_dict()` of it."""

    def __init__(
        self,
        out: Path,
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        resume: bool = False,
        quiet: bool = False,
        pairs: tuple[list[Pair], list[Pair]] | None = None,
        base: tuple[Seq2Seq, Tokenizer] | None = None,
        extra: dict | None = None,
        replay: list[Pair] | None = None,
        replay_per_epoch: int = 0,
        after_epoch: Callable[[Seq2Seq], str | None] | None = None,
        negatives: list[Pair] | None = None,
        unlikelihood: float = 1.0,
        anchored: bool = False,
    ):
        """`pairs` (train, valid) replaces the corpus; `base` (model, tokenizer) starts from a trained
        model instead of a new tokenizer and random weights (fine-tuning); `extra` joins config.json;
        each epoch adds the next `replay_per_epoch` pairs of `replay` to the training pairs;
        `after_epoch(model)` may end the run after any epoch by returning why; every step adds
        `unlikelihood` times the unlikelihood of a few of the `negatives` (replies rated bad);
        `anchored`: the replayed pairs are learned from `base`'s distribution (`anchored_loss`)."""
        self.start = time.monotonic()
        self.extra = extra or {}
        self.after_epoch = after_epoch
        self.dist = Distributed.from_environment(cfg.device)
        self.out, self.cfg, self.quiet = Path(out), cfg, quiet or not self.dist.is_main
        self.device = self.dist.device or resolve_device(cfg.device)
        set_threads(cfg.threads)
        self.precision = resolve_precision(cfg.precision, self.device)
        use_precision(self.precision)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        state, model_cfg = self._saved_run(resume, model_cfg)
        cfg = self.cfg  # a resumed run's own settings
        train_pairs, valid_pairs = pairs or split_pairs(cfg.corpus)
        train_pairs = with_talk_before(train_pairs, cfg.talk_before, random.Random(cfg.seed))
        self.valid_pairs = valid_pairs[: cfg.max_valid_pairs]
        if base is not None:
            model_cfg, self.tokenizer = base[0].cfg, base[1]
        elif state is None:
            self.tokenizer = self._new_tokenizer(train_pairs)
            model_cfg.vocab_size = self.tokenizer.vocab_size
            model_cfg.unconditional = cfg.blank_source > 0  # it learns replies to no message when sources are blanked
        self.model_cfg = model_cfg
        self.model, self.parent = self._models(model_cfg, base[0] if base is not None else None, anchored)
        self.forward = self.dist.wrap(self.model)  # what the forward pass runs through
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._encode(train_pairs, replay or [], negatives or [])
        self.replay_per_epoch = min(replay_per_epoch, len(self.replay_examples))
        self.unlikelihood = unlikelihood
        self.steps_per_epoch = len(self.batches(0))
        if self.steps_per_epoch == 0:
            raise ChatbotError(
                tr("too few pairs for {world} processes: no batch for every rank", world=self.dist.world)
            )
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.best_loss, self.bad_evals, self.train_seconds = float("inf"), 0, 0.0
        self.eval_seconds = 0.0  # how long the last validation took: the budget keeps room for one more
        self.average: AveragedModel | None = None  # the weights' running mean, once `average_from` is passed
        self._start(state)

    def _saved_run(self, resume: bool, model_cfg: ModelConfig) -> tuple[dict | None, ModelConfig]:
        """A resumed run's training state and model settings (its saved settings and tokenizer
        replace those given, but for where and how fast it runs); (None, model_cfg) otherwise."""
        if resume and (self.out / STATE).exists():
            state = load_training_state(self.out / STATE)
            saved = read_config(self.out)
            self.cfg = TrainConfig.from_dict({**saved["train"], **_runtime_settings(self.cfg)})
            self.tokenizer = Tokenizer.load(self.out / TOKENIZER)
            return state, ModelConfig.from_saved(saved["model"])
        if resume:
            self.say(tr("{out}: nothing to resume, starting afresh", out=self.out))
        return None, model_cfg

    def _new_tokenizer(self, train_pairs: list[Pair]) -> Tokenizer:
        """A tokenizer trained on the pairs' turns by the first process and saved in the run's
        folder; every process then loads that one."""
        if self.dist.is_main:
            self.say(
                tr(
                    "training a {size}-piece tokenizer on {pairs} pairs",
                    size=self.cfg.vocab_size,
                    pairs=len(train_pairs),
                )
            )
            turns = dict.fromkeys(t for p in train_pairs for t in (p.source, p.reply))  # unique, in order
            self.out.mkdir(parents=True, exist_ok=True)
            train_tokenizer(turns, self.cfg.vocab_size).save(self.out / TOKENIZER)
        self.dist.barrier()  # the other ranks use rank 0's tokenizer
        return Tokenizer.load(self.out / TOKENIZER)

    def _models(self, model_cfg: ModelConfig, base: Seq2Seq | None, anchored: bool) -> tuple[Seq2Seq, Seq2Seq | None]:
        """The model trained (new, or `base`'s weights) and, when `anchored`, a frozen copy of
        `base` whose distribution the replayed pairs are learned from."""
        model = Seq2Seq(model_cfg).to(self.device)
        if base is None:
            return model, None
        model.load_state_dict(base.state_dict())
        if not anchored:
            return model, None
        parent = Seq2Seq(model_cfg).to(self.device).eval()
        parent.load_state_dict(base.state_dict())
        return model, parent

    def _encode(self, train_pairs: list[Pair], replay: list[Pair], negatives: list[Pair]) -> None:
        """Every pair as piece ids, cut to the lengths the model reads and writes."""
        self.train_examples = self._with_replies(train_pairs)
        self.replay_examples = self._with_replies(replay)
        self.negatives = self._with_replies(negatives)
        cfg = self.model_cfg
        self.valid_examples = encode_pairs(
            self.valid_pairs, self.tokenizer, max_source=cfg.max_source_tokens, context_turns=cfg.context_turns
        )
        self.valid_words = reply_words(self.valid_pairs)

    def _with_replies(self, pairs: list[Pair]) -> list:
        """Pairs as piece ids, messages and replies cut to the lengths the model reads and writes."""
        cfg = self.model_cfg
        return encode_pairs(
            pairs, self.tokenizer, max_reply=cfg.max_reply_tokens, max_source=cfg.max_source_tokens,
            context_turns=cfg.context_turns,
        )  # fmt: skip

    def _start(self, state: dict | None) -> None:
        """Load a resumed run's state, or save the starting model (so the folder always holds
        one); then say what is being trained."""
        if state is not None:
            self.load_state_dict(state)
            self.say(
                tr(
                    "resuming at step {step} (epoch {epoch}, batch {batch})",
                    step=self.step,
                    epoch=self.epoch + 1,
                    batch=self.batch_index,
                )
            )
            self._truncate_metrics()
        elif self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / METRICS).unlink(missing_ok=True)
            save_model(self.out, self.model, self.tokenizer, self._extra())
        self.say(
            tr(
                "{millions:.2f}M parameters, {train} train pairs, {valid} valid pairs, {steps} steps/epoch, "
                "device {device}, {precision}, {threads} threads",
                millions=self.model.num_parameters() / 1e6,
                train=len(self.train_examples),
                valid=len(self.valid_pairs),
                steps=self.steps_per_epoch,
                device=self.device,
                precision=self.precision,
                threads=torch.get_num_threads(),
            )
            + (tr(", {world} processes", world=self.dist.world) if self.dist.world > 1 else "")
        )

    def epoch_examples(self, epoch: int) -> list:
        """The training pairs, plus this epoch's fresh share of the replayed ones."""
        n = self.replay_per_epoch
        if not n:
            return self.train_examples
        start = epoch * n % len(self.replay_examples)
        return self.train_examples + (self.replay_examples[start:] + self.replay_examples[:start])[:n]

    def add_negatives(self, pairs: list[Pair]) -> None:
        """More replies to say less, taken in turn with the others from the next step on."""
        self.negatives += self._with_replies(pairs)

    def negative_loss(self) -> torch.Tensor:
        """The unlikelihood of this step's share of the bad replies, taken in turn."""
        n = min(NEGATIVES_PER_STEP, len(self.negatives))
        start = self.step * n % len(self.negatives)
        chosen = (self.negatives[start:] + self.negatives[:start])[:n]
        return unlikelihood_on(self.model, collate(chosen).to(self.device), self.device, self.precision, self.forward)

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's share of the epoch's bucketed batches (indices into `epoch_examples`)."""
        return bucketed_batches(
            self.epoch_examples(epoch), self.cfg.max_tokens, self.cfg.seed, epoch, self.dist.rank, self.dist.world
        )

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def _extra(self) -> dict:
        return {"train": asdict(self.cfg), "parameters": self.model.num_parameters(), **self.extra}

    # --- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "best_loss": self.best_loss,
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            **(
                {"average": self.average.module.state_dict(), "averaged": int(self.average.n_averaged)}
                if self.average is not None
                else {}
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for key in ("step", "epoch", "batch_index", "best_loss", "bad_evals", "train_seconds"):
                setattr(self, key, state[key])
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
            if "average" in state:  # a checkpoint from before averaging began has none
                self.average = AveragedModel(self.model)
                self.average.module.load_state_dict(state["average"])
                self.average.n_averaged.fill_(state["averaged"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise ChatbotError(
                tr(
                    "{path}: does not fit this model ({reason})",
                    path=self.out / STATE,
                    reason=str(err).splitlines()[0][:120],
                )
            ) from None

    def checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        atomic_write(self.out / STATE, lambda p: torch.save(self.state_dict(), p))

    def _truncate_metrics(self) -> None:
        """Drop metrics logged after the checkpoint: the resumed run logs those steps again."""
        path = self.out / METRICS
        if path.exists() and self.dist.is_main:
            lines = [
                line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= self.step
            ]
            atomic_write(path, lambda p: Path(p).write_text("".join(line + "\n" for line in lines)))

    def log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    # --- the loop ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def progress(self) -> float:
        """How far through the run we are: by steps, or by the time budget if that ends first."""
        by_steps = self.step / max(1, self.total_steps)
        if self.cfg.max_minutes is None:
            return by_steps
        return max(by_steps, (self.train_seconds + self.elapsed_this_run()) / (self.cfg.max_minutes * 60))

    def elapsed_this_run(self) -> float:
        return self.elapsed() - self._resumed_at

    def out_of_time(self) -> bool:
        """True once the budget, less the time the final validation will take, is spent."""
        if self.cfg.max_minutes is None:
            return False
        return self.train_seconds + self.elapsed_this_run() + self.eval_seconds >= self.cfg.max_minutes * 60

    def validate(self, model: Seq2Seq, prefix: str = "valid") -> dict:
        start = time.monotonic()
        nll, tokens = total_nll(model, self.valid_examples)
        self.eval_seconds += time.monotonic() - start
        return {
            f"{prefix}_loss": nll / tokens,
            f"{prefix}_token_ppl": math.exp(nll / tokens),
            f"{prefix}_word_ppl": math.exp(nll / self.valid_words),
        }

    def update_average(self) -> None:
        """Late in a run the weights wander around a minimum with every batch; their mean (Polyak
        averaging, as in SWA) usually sits nearer to it than any one step's weights."""
        if self.cfg.average_from >= 1 or self.progress() < self.cfg.average_from:
            return
        if self.average is None:
            self.average = AveragedModel(self.model)
        self.average.update_parameters(self.model)

    def set_dropout(self, on: bool) -> None:
        """Switch the model's dropout between the configured rate and zero: its dropout layers and
        a multi-layer LSTM's own dropout between layers."""
        rate = self.model_cfg.dropout if on else 0.0
        for module in self.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = rate
            elif isinstance(module, torch.nn.LSTM) and module.num_layers > 1:
                module.dropout = rate

    def evaluate_and_checkpoint(self) -> bool:
        """Validate, keep the best weights, write the training state; True means stop early."""
        self.eval_seconds = 0.0
        record = {
            "step": self.step,
            "epoch": self.epoch,
            "seconds": round(self.train_seconds + self.elapsed_this_run(), 2),
            **self.validate(self.model),
        }
        weights = self.model
        if self.average is not None:
            record.update(self.validate(self.average.module, "average"), averaged=int(self.average.n_averaged))
            if record["average_loss"] < record["valid_loss"]:  # the mean stands for this step
                weights = self.average.module
        loss = min(record["valid_loss"], record.get("average_loss", math.inf))
        improved = loss < self.best_loss
        if improved:
            self.best_loss, self.bad_evals = loss, 0
        else:
            self.bad_evals += 1
        if (improved or self.cfg.keep == "last") and self.dist.is_main:
            saved = {**record, "weights": "average" if weights is not self.model else "step"}
            save_model(self.out, weights, self.tokenizer, {**self._extra(), "best" if improved else "last": saved})
        self.log(record)
        self.say(
            tr(
                "step {step}: valid word ppl {word_ppl:.1f} (token ppl {token_ppl:.1f})",
                step=self.step,
                word_ppl=record["valid_word_ppl"],
                token_ppl=record["valid_token_ppl"],
            )
            + (
                tr("; averaged weights {word_ppl:.1f}", word_ppl=record["average_word_ppl"])
                if self.average is not None
                else ""
            )
            + (" *" if improved else "")
        )
        self.train_seconds += self.elapsed_this_run()
        self._resumed_at = self.elapsed()
        self.checkpoint()
        return self.bad_evals >= self.cfg.patience

    def train(self) -> dict:
        self._resumed_at = self.elapsed() if self.step else 0.0  # a fresh run's budget includes the tokenizer
        cfg = self.cfg
        self.model.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            disable=self.quiet,
            file=sys.stderr,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        window_tokens, window_start, losses = 0, time.monotonic(), []
        stop = None
        while self.epoch < cfg.epochs and stop is None:
            batches, examples = self.batches(self.epoch), self.epoch_examples(self.epoch)
            self.set_dropout(self.epoch >= cfg.dropout_from_epoch)
            while self.batch_index < len(batches):
                if self.dist.any(self.out_of_time()):  # every rank stops at the same step
                    stop = "time"
                    break
                loss, tokens, lr = self.optimise(batches[self.batch_index], examples)
                self.step += 1
                self.batch_index += 1
                window_tokens += tokens
                losses.append(loss)
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    self.log_progress(bar, window_tokens, window_start, losses, lr)
                    window_tokens, window_start, losses = 0, time.monotonic(), []
                if self.step % cfg.eval_every == 0 and self.dist.any(self.evaluate_and_checkpoint()):
                    stop = "patience"
                    break
            else:
                self.epoch, self.batch_index = self.epoch + 1, 0
                if self.after_epoch is not None and self.epoch < cfg.epochs:
                    stop = self.after_epoch(self.model)
        bar.close()
        return self.finish(stop)

    def optimise(self, indices: list[int], examples: list) -> tuple[float, int, float]:
        """One optimiser step on the examples at `indices`: (loss, target tokens, learning rate)."""
        cfg, model = self.cfg, self.model
        rng = random.Random(cfg.seed * 1_000_003 + self.epoch * 10_007 + self.batch_index)  # the same on resume
        chosen = blank_sources([examples[i] for i in indices], cfg.blank_source, rng)
        batch = collate(chosen).to(self.device)
        lr = learning_rate(cfg, self.step, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.parent is not None:
            replayed = torch.tensor([i >= len(self.train_examples) for i in indices])
            loss, tokens = anchored_loss(model, self.parent, batch, replayed, self.device, self.precision, self.forward)
        else:
            loss, tokens = loss_on(model, batch, cfg, self.device, self.precision, forward=self.forward)
        if self.negatives and self.unlikelihood:
            loss = loss + self.unlikelihood * self.negative_loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        self.optimizer.step()
        self.update_average()
        return loss.item(), tokens, lr

    def log_progress(self, bar, tokens: int, since: float, losses: list[float], lr: float) -> None:
        """The training log's record of the steps since `since` (their target tokens, every rank's,
        and losses), and the progress bar's figures."""
        rate = self.dist.total(tokens) / (time.monotonic() - since)
        record = {
            "step": self.step,
            "epoch": self.epoch,
            "seconds": round(self.train_seconds + self.elapsed_this_run(), 2),
            "loss": sum(losses) / len(losses),
            "tokens_per_s": rate,
            "lr": lr,
        }
        self.log(record)
        postfix = {"loss": f"{record['loss']:.3f}", "tok/s": f"{rate:.0f}", "lr": f"{lr:.1e}"}
        if self.cfg.max_minutes is not None:
            postfix["left"] = f"{max(0.0, self.cfg.max_minutes * 60 - record['seconds']) / 60:.1f}min"
        bar.set_postfix(postfix, refresh=False)

    def finish(self, stop: str | None) -> dict:
        """After the last step: validate the steps not yet validated, say why it stopped, plot the
        curves; a run stopped before its first step saved nothing and is an error."""
        cfg = self.cfg
        if self.step == 0:  # the budget ran out before the first step: random weights are no model
            if self.dist.is_main:
                (self.out / WEIGHTS).unlink(missing_ok=True)
            self.dist.close()
            raise ChatbotError(
                tr(
                    "the time budget ({minutes:g} minutes) ended before the first training step: nothing "
                    "trained, no model saved; give more --max-minutes",
                    minutes=cfg.max_minutes,
                )
            )
        if stop != "patience" and (self.step % cfg.eval_every or self.step == 0):
            self.evaluate_and_checkpoint()  # the last steps, not yet validated
        why = {
            None: tr("{epochs} epochs done", epochs=cfg.epochs),
            "time": tr("time budget reached"),
            "patience": tr("no better validation loss in {patience} evaluations", patience=cfg.patience),
        }.get(stop, stop)
        self.say(tr("stopped: {why}; best valid loss {loss:.4f}", why=why, loss=self.best_loss))
        if self.dist.world > 1:
            digest = weights_digest(self.model)
            print(
                f"rank {self.dist.rank}/{self.dist.world}: step {self.step}, weights digest {digest}", file=sys.stderr
            )
        if self.dist.is_main:
            from training.plots import plot_metrics

            plot_metrics(self.out / METRICS, self.out / "training.png")
        self.dist.close()
        return {"step": self.step, "best_valid_loss": self.best_loss, "seconds": self.train_seconds}


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of every weight, so ranks can show they hold the same model."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _runtime_settings(cfg: TrainConfig) -> dict:
    """Settings a resumed run may change: where and how fast it runs, and how long."""
    keys = ("device", "threads", "max_minutes", "epochs", "average_from")
    return {k: getattr(cfg, k) for k in keys}


def train(
    out: Path, model_cfg: ModelConfig, cfg: TrainConfig, resume: bool = False, quiet: bool = False, base=None
) -> dict:
    """Train a model into `out`; `base` (model, tokenizer) starts from trained weights instead of random ones."""
    return Trainer(out, model_cfg, cfg, resume=resume, quiet=quiet, base=base).train()
