"""Name keys that survive transliteration: the same person spelled by different romanization schemes.

`Muammar Qaddafi`, `Moammar Gadhafi` and `Muamar Kaddafi` differ letter by letter but fold to nearly the
same key, so a fuzzy comparison of the keys sees one name. The folding is deliberately lossy (g/k/q, y/i/j,
v/w, doubled letters): the score, not the key, decides how close two names are.
"""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose into a base letter plus a mark.
_SPECIAL_LETTERS = str.maketrans(
    {"\u0131": "i", "ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe"}
)

# Arabic articles: "al-Rashid", "el Rashid" and "Rashid" are one family name.
_PARTICLES = frozenset({"al", "el", "ad", "ud", "ul"})

# Ordered: longer clusters first, so "tsch" is folded before "sch" and "ch" are looked at.
_FOLDS: tuple[tuple[str, str], ...] = (
    (r"tsch|tch", "ch"),
    (r"sch", "sh"),
    (r"zh", "j"),
    (r"kh|gh|q|g|ck", "k"),
    (r"c(?!h)", "k"),
    (r"dh", "d"),
    (r"th", "t"),
    (r"ph", "f"),
    (r"w", "v"),
    (r"x", "ks"),
    (r"ou|oo", "u"),
    (r"ee", "i"),
    (r"[yj]", "i"),
    (r"(.)\1+", r"\1"),  # doubled letters: Haddad/Hadad, Kaddafi/Kadafi
    (r"(?<=[aeiou])f$", "v"),  # Russian endings: -off/-ov, -eff/-ev
)
_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in _FOLDS)


def plain_letters(text: str) -> str:
    """Lower-case ASCII words: diacritics stripped, punctuation gone (apostrophes join, the rest split)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL_LETTERS))
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    ascii_only = re.sub("['`\u2019]", "", ascii_only)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_only).split())


def fold_token(token: str) -> str:
    """One word reduced to its transliteration-insensitive key."""
    for pattern, replacement in _COMPILED:
        token = pattern.sub(replacement, token)
    return token


def name_tokens(name: str) -> list[str]:
    """The folded words of a name, without articles."""
    return [fold_token(token) for token in plain_letters(name).split() if token not in _PARTICLES]


def name_key(name: str) -> str:
    return " ".join(name_tokens(name))
