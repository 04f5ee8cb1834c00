"""The preference-data contract (docs/DESIGN.md §3.1) and the tools around it: convert, split, synth, stats."""

from rfm.data.jsonl import Pair, open_text_lines, read_pairs, write_pairs

__all__ = ["Pair", "open_text_lines", "read_pairs", "write_pairs"]
