"""A conversation as Markdown (to read) and JSON (to process)."""

from __future__ import annotations

import json
from pathlib import Path

from chatbot.storage import Storage


def export_conversation(storage: Storage, conversation_id: int, directory: Path) -> list[Path]:
    conversation = storage.db["conversations"].get(conversation_id)
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
    stem.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps({"conversation": conversation, "messages": messages}, ensure_ascii=False, indent=2), encoding="utf-8")
    return [stem.with_suffix(".md"), stem.with_suffix(".json")]
