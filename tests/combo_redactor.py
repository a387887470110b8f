"""A user's own redactor, as `--redactor tests.combo_redactor:mask_order_numbers` names one in the
combination matrix (tests/test_combos.py): importable from the test process and its workers."""
from __future__ import annotations

import re

_ORDER_NUMBER = re.compile(r"\b(order|R)\s?(\d+)\b")


def mask_order_numbers(text: str) -> tuple[str, dict[str, int]]:
    """Masks order numbers ("order 7", "R7"); returns the text and {kind: count}."""
    masked, count = _ORDER_NUMBER.subn(lambda m: f"{m[1]} [ORDER]", text)
    return masked, ({"order_number": count} if count else {})
