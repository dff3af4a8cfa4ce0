"""A conversation as Markdown (to read) and JSON (to process), written beside the log (for
chat.db, in chat-exports/), readable by their owner only (`chatbot.private_files`)."""

from __future__ import annotations

import json
from pathlib import Path

from chatbot.private_files import private_directory, write_private
from chatbot.storage import Storage


def exports_directory(storage: Storage) -> Path:
    return storage.path.with_name(storage.path.stem + "-exports")


def export_conversation(storage: Storage, conversation_id: int, directory: Path | None = None) -> list[Path]:
    """Write conversation-N.md and conversation-N.json into `directory` (default: the log's
    exports directory); return their paths."""
    directory = private_directory(directory or exports_directory(storage))
    conversation = storage.conversation(conversation_id)
    messages = storage.messages(conversation_id)
    for m in messages:
        m["decoding"] = json.loads(m["decoding"]) if m["decoding"] else None
        m["attention"] = json.loads(m["attention"]) if m["attention"] else None
        m["feedback"] = storage.feedback(m["id"])
    stem = Path(directory) / f"conversation-{conversation_id}"
    md = [f"# {conversation['title']}", "", f"Started {conversation['created_at']}", ""]
    for m in messages:
        who = "**You**" if m["role"] == "user" else "**Bot**"
        how = f" _({m['decoding']['strategy']}, {m['latency_ms']:.0f} ms)_" if m["decoding"] else ""
        md += [f"{who}{how}: {m['text']}", ""]
        for f in m["feedback"]:
            if f["kind"] == "correction":
                md += [f"> corrected to: {f['text']}", ""]
            elif f["kind"] == "rating":
                md += [f"> rated {'good' if f['rating'] > 0 else 'bad'}", ""]
    return [
        write_private(stem.with_suffix(".md"), "\n".join(md)),
        write_private(
            stem.with_suffix(".json"),
            json.dumps({"conversation": conversation, "messages": messages}, ensure_ascii=False, indent=2),
        ),
    ]
