"""Values that look like personal data, where only references belong (``attributes``, ``consent_ref``).

An audit event describes an operation on personal information; it must not carry the
information itself. A service that puts a phone number into ``attributes`` would store it in
clear, outside the pseudonymisation of ``subject_ids``. These shapes are refused:

* a mainland mobile number: 11 digits starting ``1[3-9]`` (``+86``/``86`` and ``-``/space
  separators allowed);
* an 18-character resident identity number (GB 11643-1999) with an existing birth date and a
  valid check digit;
* an e-mail address;
* a bank card number: 13 to 19 digits (spaces or ``-`` between groups allowed) starting with 3,
  4, 5 or 6 and passing the Luhn check.

Digit runs are matched whole, never next to an ASCII letter or digit (a 20-digit order number
or a hex digest does not contain a phone number), and UUIDs are skipped, so look-alikes pass:
an 11-digit order number not starting ``1[3-9]``, an 18-digit number with a wrong check digit,
a card-length number failing Luhn.

Pure and cheap: a value with no ``@`` and fewer than 11 digits is not looked at further.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

MOBILE: Final = "a mainland mobile phone number"
RESIDENT_ID: Final = "a resident identity number"
EMAIL: Final = "an e-mail address"
BANK_CARD: Final = "a bank card number"

# Numbers are matched whole: not next to an ASCII letter or digit (a hex digest or a longer
# order number holds digit runs that are not phone numbers); Chinese text around them is fine.
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9A-Za-z])")
_ID18 = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![0-9A-Za-z-])[3-6][0-9]{3}(?:[- ]?[0-9]){9,15}(?![0-9A-Za-z-])")
#: UUIDs are references by construction; their digit groups are never looked at.
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_STRIP_DIGITS: Final = str.maketrans("", "", "0123456789")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"


def resident_id_valid(text: str) -> bool:
    """GB 11643-1999: 17 digits with an existing birth date (positions 7-14) and the check character."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != text[17].upper():
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812 card numbers."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def looks_like_personal_data(value: str) -> str | None:
    """What personal data ``value`` looks like (a phrase for an error message), or None."""
    has_at = "@" in value
    if not has_at and len(value) - len(value.translate(_STRIP_DIGITS)) < 11:
        return None
    if has_at and _EMAIL.search(value):
        return EMAIL
    if "-" in value:
        value = _UUID.sub(" ", value)
    for m in _ID18.finditer(value):
        if resident_id_valid(m.group()):
            return RESIDENT_ID
    if _MOBILE.search(value):
        return MOBILE
    for m in _CARD.finditer(value):
        digits = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return BANK_CARD
    return None
