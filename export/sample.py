"""A small built-in sample of (prompt, response) text for export-time validation."""

from __future__ import annotations

PROMPTS = [
    "How do I make my sourdough starter more active?",
    "Summarise: my roommate keeps eating my food and says it's fine because we share the fridge. "
    "I've asked twice and it keeps happening. What should I do without ruining the friendship?",
    "Explain what a hash table is to a beginner programmer.",
    "",
    "Write a short, polite reply declining a meeting invitation next Tuesday.",
    "What are the health effects of drinking coffee every day? Please be specific and cite typical amounts.",
]

RESPONSES = [
    "Feed it twice a day with equal weights of flour and water, keep it warm (24-26 C), and use some whole-grain rye.",
    "Just wait longer.",
    "Talk to your roommate calmly, label your food, and suggest separate shelves; if it continues, "
    "agree on a shared-groceries budget.",
    "Move out.",
    "A hash table stores values under keys. A hash function turns each key into an index in an array, so "
    "looking a key up takes about the same time no matter how many items are stored.\n\n"
    "- insert: compute the index, put the value there\n- lookup: compute the index, read it\n"
    "- collisions: two keys can map to one index; chaining or probing resolves them",
    "It's like a dictionary.",
    "Thank you for the invitation. Unfortunately I can't make it on Tuesday; could we find another time?",
    "no",
    "Moderate intake (up to about 400 mg of caffeine, roughly 3-4 cups) is linked to lower risk of type 2 "
    "diabetes and liver disease in observational studies; more can raise anxiety and disturb sleep. " * 3,
    "Coffee is fine probably, maybe, I think, it depends!!",
]


def sample_pairs(n_responses_per_prompt: int = 4) -> list[tuple[str, str]]:
    """(prompt, response) texts of many lengths (some past any max_length)."""
    texts = []
    for i, prompt in enumerate(PROMPTS):
        for k in range(n_responses_per_prompt):
            texts.append((prompt, RESPONSES[(i * 3 + k) % len(RESPONSES)]))
    return texts
