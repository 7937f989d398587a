"""Usernames as people type them into the members page: one canonical form, or a refusal.

NFKC first (what Django's own forms do), so a full-width "ａｄｍｉｎ" is "admin" and finds
that account instead of creating a look-alike (or crashing on the unique column); then
surrounding whitespace goes, characters nobody can see are refused, and Django's username
validator has the last word.
"""

from __future__ import annotations

import unicodedata

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

MAX_LENGTH = 150
# Format characters (zero-width space and joiners, word joiner, BOM, bidi controls),
# controls, unassigned and private-use code points.
INVISIBLE_CATEGORIES = {"Cf", "Cc", "Cn", "Co", "Cs", "Zl", "Zp"}
# Letters and marks that render as nothing: Hangul fillers, the braille blank, the
# combining grapheme joiner, Khmer inherent vowels, the Mongolian vowel separator.
INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u034f", "\u17b4", "\u17b5",
             "\u180e"}
_validate = UnicodeUsernameValidator()


def _invisible(char: str) -> bool:
    code = ord(char)
    return (unicodedata.category(char) in INVISIBLE_CATEGORIES or char in INVISIBLE
            or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF)  # variation selectors


def username_clean(raw: str) -> str:
    """The canonical username for `raw`; ValidationError({"username": ...}) when it cannot
    be one. The message never says whether an account of that name exists."""
    name = unicodedata.normalize("NFKC", raw).strip()
    if not name:
        raise ValidationError({"username": "Give a username."})
    if any(_invisible(char) for char in name):
        raise ValidationError({"username": "A username cannot contain invisible characters "
                                           "(zero-width spaces, joiners, fillers)."})
    if len(name) > MAX_LENGTH:
        raise ValidationError({"username": f"A username has at most {MAX_LENGTH} characters."})
    try:
        _validate(name)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from None
    return name
