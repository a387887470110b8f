"""Best-effort PII redaction of transcript text before it is sent to a model (no Beam).

A redactor is any picklable callable ``text -> (redacted text, {kind: count})``. ``redact_pii``
is the built-in one: pattern matching, not understanding, so it misses PII written in ways it
does not know (a card number read out in words, "john at example dot com") and masks the odd
number that only looks like PII (a 16-digit reference that happens to pass the Luhn check).
Plug in a stronger one (for example Amazon Comprehend's DetectPiiEntities) through the same
signature.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

Redactor = Callable[[str], "tuple[str, Mapping[str, int]]"]

CARD_NUMBERS, EMAILS, PHONE_NUMBERS, SSNS = "card_numbers", "emails", "phone_numbers", "ssns"
KINDS = (CARD_NUMBERS, EMAILS, PHONE_NUMBERS, SSNS)
MASKS = {CARD_NUMBERS: "[CARD_NUMBER]", EMAILS: "[EMAIL]", PHONE_NUMBERS: "[PHONE_NUMBER]",
         SSNS: "[SSN]"}

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                    r"\.[A-Za-z]{2,}(?![\w-])")
# Digit groups joined by single spaces or dashes: card numbers are written (or transcribed)
# in any grouping, "4111 1111 1111 1111", "4111-1111-...", or one digit at a time.
_DIGIT_RUN = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*(?![\w-])")
_GROUP = re.compile(r"\d+")
# US SSN: area 001-899 except 666, group 01-99, serial 0001-9999, separated by dashes or spaces
# (nine bare digits are too often something else).
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])")
# Numbers written with a leading + (E.164: up to 15 digits), then North American numbers:
# optional +1/1, area code 2xx-9xx (with or without parentheses), 3 + 4 digits.
_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ .-]?\d){6,14}(?![\w-])")
_NANP_PHONE = re.compile(r"(?<![\w+(-])(?:\+?1[ .-]?)?(?:\([2-9]\d\d\)[ .-]?|[2-9]\d\d[ .-]?)"
                         r"\d{3}[ .-]?\d{4}(?![\w-])")
CARD_DIGITS = (13, 19)  # ISO/IEC 7812 primary account numbers


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes.

    Args:
        digits: The card number's digits only.
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _redact_cards(text: str) -> tuple[str, int]:
    count = 0

    def in_run(run: re.Match[str]) -> str:
        nonlocal count
        groups = list(_GROUP.finditer(run.group()))
        out, cursor, i = [], 0, 0
        while i < len(groups):
            best = None
            digits = ""
            # The longest span of whole groups starting at i that is a Luhn-valid card number.
            for j in range(i, len(groups)):
                digits += groups[j].group()
                if len(digits) > CARD_DIGITS[1]:
                    break
                if len(digits) >= CARD_DIGITS[0] and luhn_valid(digits):
                    best = j
            if best is None:
                i += 1
                continue
            out.append(run.group()[cursor:groups[i].start()] + MASKS[CARD_NUMBERS])
            cursor = groups[best].end()
            count += 1
            i = best + 1
        out.append(run.group()[cursor:])
        return "".join(out)

    return _DIGIT_RUN.sub(in_run, text), count


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Mask emails, Luhn-valid card numbers, US SSNs and phone numbers; counts per kind.

    Args:
        text: The text to redact.
    """
    counts = dict.fromkeys(KINDS, 0)
    text, counts[EMAILS] = _EMAIL.subn(MASKS[EMAILS], text)
    text, counts[CARD_NUMBERS] = _redact_cards(text)
    text, counts[SSNS] = _SSN.subn(MASKS[SSNS], text)
    text, international = _INTERNATIONAL_PHONE.subn(MASKS[PHONE_NUMBERS], text)
    text, national = _NANP_PHONE.subn(MASKS[PHONE_NUMBERS], text)
    counts[PHONE_NUMBERS] = international + national
    return text, counts


def checked_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """A redactor's counts as {counter-safe kind: count}; ValueError when they are not counts.

    Args:
        counts: What a redactor returned beside the text: kind -> count.
    """
    out: dict[str, int] = {}
    for kind, n in counts.items():
        if not isinstance(kind, str) or not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"a redactor must return counts as {{kind: count >= 0}}, got "
                             f"{kind!r}: {n!r}")
        name = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "other"
        out[name] = out.get(name, 0) + n
    return out
