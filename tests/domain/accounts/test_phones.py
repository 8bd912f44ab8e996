"""Phone number normalisation to E.164."""

from __future__ import annotations

import pytest

from relaychat.domain.accounts.phones import normalize_phone
from relaychat.errors import InvalidPhoneNumber


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+15551234567", "US", None),
        ("+1 415 555 2671", "US", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("whatsapp:+442079460958", "US", "+442079460958"),
        ("tel:+1-415-555-2671", "US", "+14155552671"),
        ("+1 415 555 2671 ext. 1234", "US", "+14155552671"),
        ("1-800-FLOWERS", "US", "+18003569377"),
    ],
)
def test_normalises_to_e164(raw: str, region: str, expected: str | None) -> None:
    if expected is None:
        # 555-123-4567 is in a range reserved for fiction: not a valid number.
        with pytest.raises(InvalidPhoneNumber):
            normalize_phone(raw, region)
    else:
        assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "12", "+999 1234", "whatsapp:"])
def test_refuses_invalid_numbers(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)
