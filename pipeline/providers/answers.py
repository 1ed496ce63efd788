"""Turning model answers into P(yes): token logprobs, logits or plain text."""
from __future__ import annotations

import math
import re

YES_WORDS = ("yes", "y", "true")
NO_WORDS = ("no", "n", "false")


def _norm(token: str) -> str:
    return re.sub(r"[^a-z]", "", token.strip().lower())


def p_yes_from_top_logprobs(top: list[tuple[str, float]]) -> float | None:
    """P(yes) from the first token's top logprobs: mass on yes-like tokens over yes+no mass.

    Tokens are matched case and punctuation tolerant ("YES", " yes", "Yes."). Returns None
    when no yes/no token appears among the alternatives."""
    yes = sum(math.exp(lp) for tok, lp in top if _norm(tok) in YES_WORDS)
    no = sum(math.exp(lp) for tok, lp in top if _norm(tok) in NO_WORDS)
    if yes + no == 0:
        return None
    return yes / (yes + no)


def p_yes_from_text(text: str) -> float | None:
    """1.0 / 0.0 for an answer that starts with yes / no (case and punctuation tolerant), else None."""
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return None
    if words[0] in YES_WORDS:
        return 1.0
    if words[0] in NO_WORDS:
        return 0.0
    return None
