from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from relaychat.realtime import EventBus
from relaychat.realtime.events import EVENT_TYPES, MessageDelta, parse_event
from tests.support.realtime import frame_of, sample_events, take


def test_samples_cover_every_event_type() -> None:
    assert sorted(event.type for event in sample_events()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: event.type)
def test_event_json_round_trip(event: MessageDelta) -> None:
    assert parse_event(event.model_dump_json()) == event
    assert json.loads(event.model_dump_json())["type"] == event.type


def test_events_reject_unknown_fields_and_types() -> None:
    with pytest.raises(ValidationError):
        MessageDelta(conversation_id="c", message_id="m", delta="x", user_id="u")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        parse_event('{"type": "message.exploded", "conversation_id": "c"}')


async def test_every_event_type_survives_the_bus(bus: EventBus) -> None:
    events = sample_events()
    async with bus.subscribe("user-a") as sub:
        ids = [await bus.publish("user-a", event) for event in events]
        received = await take(sub, len(events))
    for event, event_id, envelope in zip(events, ids, received, strict=True):
        message = frame_of(envelope)
        assert (message.id, message.event) == (event_id, event.type)
        assert parse_event(message.data) == event
        # The user id routes the event; it is not part of what the client receives.
        assert b"user-a" not in envelope.frame
