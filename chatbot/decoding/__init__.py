"""Decoding: turning the model's next-piece distributions into replies.

replies.py     text in, replies out (`reply`), and piece ids in, hypotheses out (`decode`)
loop.py        the one loop every strategy runs in, and what it tells observers (`Step`)
strategies.py  greedy, sampling, consensus sampling, beam search: how each picks and ends
rules.py       what every strategy decodes under: bans, lengths, penalties, guidance, forcing
trace.py       what each step chose, and the hypotheses read back from it
ranking.py     a distribution's most likely pieces, found quickly on the CPU
"""

from chatbot.decoding.loop import Observer, Step
from chatbot.decoding.replies import Reply, decode, forced_gains, prepare, reply
from chatbot.decoding.rules import guidance_of, guided
from chatbot.decoding.strategies import ranking_score, rerank_of, sample_from, sampled_rows, truncate_distribution
from chatbot.decoding.trace import Hypothesis
from chatbot.settings import STRATEGIES, BeamSettings, GreedySettings, SampleSettings, Settings, settings_from

__all__ = [
    "STRATEGIES",
    "BeamSettings",
    "GreedySettings",
    "Hypothesis",
    "Observer",
    "Reply",
    "SampleSettings",
    "Settings",
    "Step",
    "decode",
    "forced_gains",
    "guidance_of",
    "guided",
    "prepare",
    "ranking_score",
    "reply",
    "rerank_of",
    "sample_from",
    "sampled_rows",
    "settings_from",
    "truncate_distribution",
]
