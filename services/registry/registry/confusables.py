"""Skeletons of names (after Unicode TR39 §4): two names with one skeleton look alike and must not coexist.

`skeleton(text)`: NFKC (full-width, ligatures, compatibility forms), drop default-ignorable characters
(zero-width joiners, soft hyphens, variation selectors), map capital `I` and the digit lookalikes, fold
case, map the common Cyrillic, Greek and Latin-extension lookalikes of Latin letters and the dash
variants, collapse the multi-letter lookalikes (`rn` ~ `m`, `vv` ~ `w`), then NFKC again. The table is a
compact subset of TR39's confusables.txt, covering the characters that actually pass for Latin letters,
digits and hyphens in identifiers.
"""

from __future__ import annotations

import unicodedata

# Before case folding: uppercase forms whose lowercase would lose the likeness.
_BEFORE_FOLD = str.maketrans(
    {
        "I": "l",
        "\u0399": "l",  # greek capital letter iota
        "\u0406": "l",  # cyrillic capital letter byelorussian-ukrainian i
        "\u04c0": "l",  # cyrillic letter palochka
        "|": "l",
        "1": "l",
        "0": "o",
    }
)

_LOOKALIKES = {
    # Cyrillic
    "\u0430": "a",  # cyrillic small letter a
    "\u0432": "b",  # cyrillic small letter ve
    "\u044c": "b",  # cyrillic small letter soft sign
    "\u0441": "c",  # cyrillic small letter es
    "\u0501": "d",  # cyrillic small letter komi de
    "\u0435": "e",  # cyrillic small letter ie
    "\u0451": "e",  # cyrillic small letter io
    "\u04bb": "h",  # cyrillic small letter shha
    "\u043d": "h",  # cyrillic small letter en
    "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
    "\u0457": "i",  # cyrillic small letter yi
    "\u0458": "j",  # cyrillic small letter je
    "\u043a": "k",  # cyrillic small letter ka
    "\u04cf": "l",  # cyrillic small letter palochka
    "\u043c": "m",  # cyrillic small letter em
    "\u043f": "n",  # cyrillic small letter pe
    "\u043e": "o",  # cyrillic small letter o
    "\u0440": "p",  # cyrillic small letter er
    "\u051b": "q",  # cyrillic small letter qa
    "\u0433": "r",  # cyrillic small letter ghe
    "\u0455": "s",  # cyrillic small letter dze
    "\u0442": "t",  # cyrillic small letter te
    "\u0438": "u",  # cyrillic small letter i
    "\u0475": "v",  # cyrillic small letter izhitsa
    "\u051d": "w",  # cyrillic small letter we
    "\u0445": "x",  # cyrillic small letter ha
    "\u0443": "y",  # cyrillic small letter u
    "\u04af": "y",  # cyrillic small letter straight u
    "\u0437": "3",  # cyrillic small letter ze
    # Greek
    "\u03b1": "a",  # greek small letter alpha
    "\u03b2": "b",  # greek small letter beta
    "\u03f2": "c",  # greek lunate sigma symbol
    "\u03b5": "e",  # greek small letter epsilon
    "\u03b7": "n",  # greek small letter eta
    "\u03b9": "i",  # greek small letter iota
    "\u03ba": "k",  # greek small letter kappa
    "\u03bd": "v",  # greek small letter nu
    "\u03bf": "o",  # greek small letter omicron
    "\u03c1": "p",  # greek small letter rho
    "\u03c4": "t",  # greek small letter tau
    "\u03c5": "u",  # greek small letter upsilon
    "\u03c7": "x",  # greek small letter chi
    "\u03b3": "y",  # greek small letter gamma
    "\u03c9": "w",  # greek small letter omega
    # Latin extensions and letter-like symbols
    "\u0131": "i",  # latin small letter dotless i
    "\u0269": "i",  # latin small letter iota
    "\u0237": "j",  # latin small letter dotless j
    "\u0261": "g",  # latin small letter script g
    "\u0251": "a",  # latin small letter alpha
    "\u2113": "l",  # script small l
    "\u01c0": "l",  # latin letter dental click
    "\u026a": "i",  # latin letter small capital i
    "\u028f": "y",  # latin letter small capital y
    "\uab83": "w",  # cherokee small letter la
    # Digits and dashes
    "\u1d0f": "o",  # latin letter small capital o
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\ufe63": "-",  # small hyphen-minus
    "\u2043": "-",  # hyphen bullet
    "\u02d7": "-",  # modifier letter minus sign
}
_AFTER_FOLD = str.maketrans({**_LOOKALIKES, "1": "l", "0": "o"})
_SEQUENCES = (("rn", "m"), ("vv", "w"))


def skeleton(text: str) -> str:
    """The form two lookalike identifiers share."""
    normalized = unicodedata.normalize("NFKC", text)
    visible = "".join(char for char in normalized if not _default_ignorable(char))
    folded = visible.translate(_BEFORE_FOLD).casefold().translate(_AFTER_FOLD)
    for sequence, replacement in _SEQUENCES:
        folded = folded.replace(sequence, replacement)
    return unicodedata.normalize("NFKC", folded)


def _default_ignorable(char: str) -> bool:
    # Format characters (Cf: zero-width space/joiners, BOM, bidi controls), soft hyphen, variation selectors.
    code = ord(char)
    return (
        unicodedata.category(char) == "Cf"
        or code == 0x00AD
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or code == 0x034F
    )


def confusable(a: str, b: str) -> bool:
    """Different strings that look alike."""
    return a != b and skeleton(a) == skeleton(b)
