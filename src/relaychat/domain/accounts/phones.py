"""Phone numbers: parsed with `phonenumbers`, stored as E.164."""

from __future__ import annotations

import phonenumbers

from relaychat.errors import InvalidPhoneNumber

_PREFIXES = ("whatsapp:", "tel:", "sms:")


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 form of `raw`; channel prefixes and extensions are dropped, invalid input refused."""
    value = raw.strip()
    lowered = value.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            value = value[len(prefix) :].strip()
            break
    try:
        parsed = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number: {exc}", value=raw) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{raw!r} is not a valid phone number", value=raw)
    # E.164 has no room for an extension; the line it reaches is the same person.
    parsed.extension = None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
