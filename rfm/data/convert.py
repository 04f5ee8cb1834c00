"""Converters from the public preference formats (../shared/data/README.md) to the rfm JSONL contract."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rfm.data.jsonl import Pair, check_texts, no_preference_reason, open_text_lines, parse_json_line
from rfm.errors import DataError

ASSISTANT_TAG = "\n\nAssistant:"


@dataclass
class ConvertReport:
    """What a conversion read, wrote and dropped (with reasons)."""

    rows: int = 0
    pairs: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))
        return f"{self.pairs} pairs from {self.rows} rows" + (f"; dropped {drops}" if drops else "")


def _field(record: dict, key: str, where: str, kind: type = str):
    value = record.get(key)
    if not isinstance(value, kind):
        raise DataError(f"{where}: field '{key}' missing or not a {kind.__name__}")
    return value


def tldr_pair(record: dict, where: str) -> Pair:
    """OpenAI summarize-from-feedback comparison -> Pair (prompt = title + post/article, user = worker)."""
    info = _field(record, "info", where, dict)
    summaries = _field(record, "summaries", where, list)
    choice = record.get("choice")
    if len(summaries) != 2 or isinstance(choice, bool) or not isinstance(choice, int) or choice not in (0, 1):
        raise DataError(f"{where}: expected two summaries and 'choice' 0 or 1")
    texts = []
    for summary in summaries:
        if not isinstance(summary, dict) or not isinstance(summary.get("text"), str):
            raise DataError(f"{where}: each summary needs a 'text' string")
        texts.append(summary["text"].strip())
    body = info.get("post") if info.get("post") is not None else info.get("article")
    if not isinstance(body, str):
        raise DataError(f"{where}: info needs a 'post' or 'article' string")
    title = info.get("title") or ""
    if not isinstance(title, str):
        raise DataError(f"{where}: info's 'title' must be a string")
    prompt = f"{title.strip()}\n\n{body.strip()}" if title else body.strip()
    worker = record.get("worker")
    if worker is not None and (isinstance(worker, bool) or not isinstance(worker, str | int)):
        raise DataError(f"{where}: field 'worker' must be a string or an integer")
    notes = record.get("extra") or {}
    if not isinstance(notes, dict):
        raise DataError(f"{where}: field 'extra' must be an object")
    extra = {"batch": record.get("batch"), "policies": [s.get("policy") for s in summaries]}
    confidence = notes.get("confidence")
    if confidence is not None:
        extra["confidence"] = confidence
    return Pair(
        prompt=prompt,
        chosen=texts[choice],
        rejected=texts[1 - choice],
        user_id=str(worker) if worker else None,
        id=str(info.get("id")) if info.get("id") is not None else None,
        extra=extra,
    )


def split_dialogue(dialogue: str) -> tuple[str, str]:
    """Split an HH-RLHF dialogue into (everything up to the last assistant tag, the final assistant turn)."""
    cut = dialogue.rfind(ASSISTANT_TAG)
    if cut < 0:
        return dialogue, ""
    head = dialogue[: cut + len(ASSISTANT_TAG)]
    return head, dialogue[cut + len(ASSISTANT_TAG) :].strip()


def hh_rlhf_pair(record: dict, where: str) -> Pair:
    """HH-RLHF {chosen, rejected} dialogues -> Pair: the shared prefix is the prompt, the final turns the responses."""
    chosen_prompt, chosen = split_dialogue(_field(record, "chosen", where))
    rejected_prompt, rejected = split_dialogue(_field(record, "rejected", where))
    extra = {} if chosen_prompt == rejected_prompt else {"prompts_differ": True}
    return Pair(prompt=chosen_prompt.strip(), chosen=chosen, rejected=rejected, extra=extra)


def ultrafeedback_pair(record: dict, where: str) -> Pair:
    """UltraFeedback binarized -> Pair, keeping GPT-4's scores as extra fields."""
    def text(key: str) -> str:
        value = record.get(key)
        if isinstance(value, list):  # chat-message form: take the last assistant message
            value = next((m.get("content") for m in reversed(value) if isinstance(m, dict)), None)
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{key}' missing or not a string")
        return value.strip()

    meta = record.get("metadata") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'metadata' must be an object")
    extra = {k: meta[k] for k in ("score_chosen", "score_rejected") if k in meta}
    if "source_index" in record:
        extra["source_index"] = record["source_index"]
    return Pair(prompt=text("prompt"), chosen=text("chosen"), rejected=text("rejected"),
                id=str(record["source_index"]) if "source_index" in record else None, extra=extra)


CONVERTERS: dict[str, Callable[[dict, str], Pair]] = {
    "tldr": tldr_pair,
    "hh-rlhf": hh_rlhf_pair,
    "ultrafeedback": ultrafeedback_pair,
}


def convert(fmt: str, sources: Iterable[str | os.PathLike], report: ConvertReport) -> Iterator[Pair]:
    """Stream pairs converted from `sources`; rows that carry no preference are dropped and counted."""
    to_pair = CONVERTERS[fmt]
    for source in sources:
        for lineno, raw in open_text_lines(source):
            if not raw.strip():
                continue
            where = f"{source}:{lineno}"
            record = parse_json_line(source, lineno, raw)
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object")
            report.rows += 1
            pair = to_pair(record, where)
            reason = no_preference_reason(pair.chosen, pair.rejected)
            if reason:
                report.dropped[reason] += 1
                continue
            check_texts(where, prompt=pair.prompt, chosen=pair.chosen, rejected=pair.rejected,
                        **({"user_id": pair.user_id} if pair.user_id else {}))
            report.pairs += 1
            yield pair
