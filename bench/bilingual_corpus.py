"""The corpora that decide between one bilingual model and two models, at one training budget:
chitchat's training conversations alone, and the same with the Korean pairs' training split added
(oversampled). Train a model on each with the same command and budget, then compare their
chitchat test perplexity, and the bilingual model's Korean test perplexity with the Korean model's.

    python bench/bilingual_corpus.py --korean ../shared/data/korean-chatbot/ChatbotData.csv --out runs/bilingual
    chatbot train --corpus runs/bilingual/english.jsonl --out runs/bi_english --max-minutes 30 --threads 1 \
        --seed 1 --eval-every 400 --dropout 0.3          # and the same for bilingual.jsonl, side by side
    chatbot evaluate --model runs/bi_english --corpus chitchat --split test
    chatbot evaluate --model runs/bi_bilingual --corpus ChatbotData.csv --split test

The result and the decision it made are in training/notes/korean.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from corpora import load_pairs
from corpora.chitchat import _conversations, split_of
from corpora.pairs import clean_turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--korean", type=Path, required=True, help="ChatbotData.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--oversample", type=int, default=3, help="copies of each Korean pair")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    english = []
    for conversation_id, conversation in sorted(_conversations().items()):
        if split_of(conversation_id) == "train":
            turns = [clean_turn(" ".join(u["text"] for u in turn)) for turn in conversation["messages"]]
            english.append([t for t in turns if t])
    korean = [[p.source, p.reply] for p in load_pairs(str(args.korean), "train")]
    for name, conversations in (("english", english), ("bilingual", english + korean * args.oversample)):
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations)
        print(f"{args.out / name}.jsonl: {len(conversations)} conversations")
    print(f"Korean training pairs: {len(korean)} x {args.oversample}")


if __name__ == "__main__":
    main()
