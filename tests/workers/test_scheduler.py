"""The scheduler: exactly once across schedulers and lease lapses, catch-up after downtime,
rights checked at every run, and replies that go out by webhook and by Twilio."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.domain.schedules.runs import post_run
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Message, Schedule
from relaychat.workers.scheduler import Scheduler
from tests.support.backends import Backend
from tests.support.chat import make_agent, messages_of, wait_generation
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.schedules import ManualClock, make_schedule, manual_time, runs_of
from tests.support.settings import llm_settings
from tests.support.twilio import (
    OUR_NUMBER,
    SENDER,
    fixture_form,
    make_channel,
    post_signed,
    sent_messages,
    thread,
)
from tests.support.webhooks import Receiver, register


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    # Webhooks to a receiver on loopback; Twilio replies retried a moment apart.
    return llm_settings(
        backend,
        tmp_path,
        fake_llm,
        webhook_allow_private_networks=True,
        outbox_poll_seconds=0.05,
        webhook_retry_schedule=[0, 0.05, 0.05],
    )


def second_scheduler(services: Services, name: str) -> Scheduler:
    """Another scheduler on the same database, as another process would run."""
    return Scheduler(
        services.sessionmaker,
        services.chat,
        worker_id=name,
        clock=services.clock,
        lease_seconds=services.settings.schedule_lease_seconds,
    )


async def posted_prompts(services: Services) -> list[str]:
    """The schedule run of every prompt stored, one entry per message."""
    async with services.sessionmaker() as session:
        metas = await session.scalars(select(Message.meta).where(Message.role == "external"))
        return [m["schedule_run_id"] for m in metas if m.get("source") == "schedule"]


async def daily(
    client: httpx.AsyncClient, user: TestUser, **fields: Any
) -> tuple[dict[str, Any], str]:
    conversation = await make_conversation(client, user, endpoint="fake")
    cid = conversation["conversation_id"]
    made = await make_schedule(client, user, conversation_id=cid, cron="0 8 * * *", **fields)
    return made, cid


async def test_two_schedulers_claiming_at_once_post_each_run_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    made = [await daily(client, user) for _ in range(6)]
    clock.advance(hours=1)
    one, two = second_scheduler(services, "one"), second_scheduler(services, "two")
    outcomes = await asyncio.gather(one.run_once(), two.run_once(), services.scheduler.run_once())
    posted = [o for batch in outcomes for o in batch if o.status == "posted"]
    assert len(posted) == 6
    prompts = await posted_prompts(services)
    assert len(prompts) == len(set(prompts)) == 6
    for schedule, _cid in made:
        [run] = await runs_of(client, user, schedule["id"])
        assert run["status"] == "posted" and run["attempts"] == 1


async def test_a_run_whose_scheduler_died_is_retried_once_and_posted_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    made, _ = await daily(client, user)
    clock.advance(hours=1)
    dead = second_scheduler(services, "dead")
    await dead.plan()
    [claimed] = await dead.claim(10)  # …and the process is killed before it posts
    assert await services.scheduler.run_once() == []  # its lease holds
    clock.advance(seconds=services.settings.schedule_lease_seconds + 1)
    [retry] = await services.scheduler.claim(10)
    assert retry.id == claimed.id
    # The dead scheduler wakes after all and posts with its lapsed claim: nothing is stored.
    late = await post_run(
        services.sessionmaker,
        services.chat,
        claimed,
        worker_id="dead",
        now=clock.now(),
        phone_region="US",
    )
    assert late.status is None
    assert await posted_prompts(services) == []
    outcome = await post_run(
        services.sessionmaker,
        services.chat,
        retry,
        worker_id=services.scheduler.worker_id,
        now=clock.now(),
        phone_region="US",
    )
    assert outcome.status == "posted"
    assert await posted_prompts(services) == [claimed.id]
    [run] = await runs_of(client, user, made["id"])
    assert (run["status"], run["attempts"]) == ("posted", 2)
    # Once posted, a lapsed lease brings nothing back.
    clock.advance(seconds=services.settings.schedule_lease_seconds * 3)
    assert await services.scheduler.run_once() == []
    assert len(await posted_prompts(services)) == 1


async def test_a_run_cut_short_twice_fails_and_posts_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    made, _ = await daily(client, user)
    clock.advance(hours=1)
    lease = services.settings.schedule_lease_seconds
    for name in ("first", "second"):
        dying = second_scheduler(services, name)
        await dying.plan()
        assert len(await dying.claim(10)) == 1
        clock.advance(seconds=lease + 1)
    assert await services.scheduler.run_once() == []
    [run] = await runs_of(client, user, made["id"])
    assert run["status"] == "failed" and "interrupted 2 times" in run["error"]
    assert await posted_prompts(services) == []


@pytest.mark.parametrize("policy", ["skip", "once"])
async def test_occurrences_missed_while_down_follow_catch_up(
    client: httpx.AsyncClient, services: Services, policy: str
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    made, _ = await daily(client, user, catch_up=policy)
    clock.advance(days=3, hours=2)  # down from 07:00 on day 1 to 09:00 on day 4
    outcomes = await services.scheduler.run_once()
    [run] = await runs_of(client, user, made["id"])
    assert run["occurrence_at"] == "2026-06-04T08:00:00Z"
    assert run["missed"] == 3
    if policy == "skip":
        assert outcomes == [] and run["status"] == "skipped"
        assert "skipped 4 occurrences" in run["error"]
        assert await posted_prompts(services) == []
    else:
        assert [o.status for o in outcomes] == ["posted"]
        assert (run["status"], run["trigger"]) == ("posted", "catch_up")
        assert await posted_prompts(services) == [run["id"]]
    got = (await client.get(f"/api/schedules/{made['id']}", headers=user.headers)).json()
    assert got["next_run_at"] == "2026-06-05T08:00:00Z"


async def test_a_deleted_conversation_fails_the_run_and_disables_the_schedule(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    made, cid = await daily(client, user)
    deleted = await client.delete(f"/api/convos/{cid}", headers=user.headers)
    assert deleted.status_code == 204, deleted.text
    clock.advance(hours=1)
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "failed"
    [run] = await runs_of(client, user, made["id"])
    assert run["status"] == "failed"
    assert run["error"].startswith("conversation_not_found") and cid in run["error"]
    got = (await client.get(f"/api/schedules/{made['id']}", headers=user.headers)).json()
    assert got["enabled"] is False and cid in got["disabled_reason"]
    assert got["next_runs"] == []
    clock.advance(days=1)
    assert await services.scheduler.run_once() == []  # disabled: no more runs
    assert await posted_prompts(services) == []


async def test_an_agent_no_longer_shared_fails_the_run_and_disables_the_schedule(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    owner, user = await make_user(client), await make_user(client)
    agent = await make_agent(client, owner, visibility="public")
    made = await make_schedule(
        client, user, agent_id=agent["agent_id"], new_conversation=True, cron="0 8 * * *"
    )
    unshared = await client.patch(
        f"/api/agents/{agent['agent_id']}", json={"visibility": "private"}, headers=owner.headers
    )
    assert unshared.status_code == 200, unshared.text
    clock.advance(hours=1)
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "failed"
    got = (await client.get(f"/api/schedules/{made['id']}", headers=user.headers)).json()
    assert got["enabled"] is False and "agent_not_found" in got["disabled_reason"]


async def test_an_agent_schedule_opens_a_conversation_per_run_or_reuses_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    agent = await make_agent(client, user)
    each = await make_schedule(
        client, user, agent_id=agent["agent_id"], new_conversation=True, cron="0 8 * * *"
    )
    reused = await make_schedule(client, user, agent_id=agent["agent_id"], cron="0 8 * * *")
    for _ in range(2):
        clock.advance(days=1) if each["run_count"] else clock.advance(hours=1)
        each["run_count"] = 1
        assert len(await services.scheduler.run_once()) == 2
    each_runs = await runs_of(client, user, each["id"])
    reused_runs = await runs_of(client, user, reused["id"])
    assert len({r["conversation_id"] for r in each_runs}) == 2
    assert len({r["conversation_id"] for r in reused_runs}) == 1
    for run in each_runs + reused_runs:
        await wait_generation(client, user, run["generation_id"])
    conversation = await client.get(
        f"/api/convos/{reused_runs[0]['conversation_id']}", headers=user.headers
    )
    assert conversation.json()["agent_id"] == agent["agent_id"]


async def test_run_now_posts_at_once_even_when_disabled(
    client: httpx.AsyncClient, services: Services
) -> None:
    await manual_time(services)
    user = await make_user(client)
    made, cid = await daily(client, user, enabled=False)
    asked = await client.post(f"/api/schedules/{made['id']}/run", headers=user.headers)
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "pending" and asked.json()["trigger"] == "manual"
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "posted"
    [run] = await runs_of(client, user, made["id"])
    assert run["trigger"] == "manual" and run["conversation_id"] == cid


async def test_a_runs_reply_is_delivered_by_webhook(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    hook = await register(client, user, receiver, events=["message.completed"])
    made, cid = await daily(client, user)
    clock.advance(hours=1)
    [outcome] = await services.scheduler.run_once()
    await receiver.wait_for(1, accepted=True)
    [delivery] = receiver.accepted
    assert delivery.verified
    payload = delivery.payload
    assert payload["type"] == "message.completed"
    assert payload["data"]["in_reply_to"] == outcome.message_id
    assert payload["data"]["conversation_id"] == cid
    [run] = await runs_of(client, user, made["id"])
    assert payload["data"]["message"]["message_id"] == run["reply_message_id"]
    # No request behind it: the run's id stands in, on its generation and its callback.
    generation = await client.get(f"/api/generations/{run['generation_id']}", headers=user.headers)
    listed = await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=user.headers)
    assert generation.json()["request_id"] == run["id"]
    assert [d["request_id"] for d in listed.json()["deliveries"]] == [run["id"]]


async def test_a_schedule_on_a_channel_thread_texts_its_reply(
    client: httpx.AsyncClient,
    services: Services,
    fake_twilio: FakeTwilio,
    fake_llm: FakeLLM,
) -> None:
    clock: ManualClock = await manual_time(services)
    user = await make_user(client)
    channel = await make_channel(client, user, fake_twilio)
    # The sender wrote once: the thread exists, and its first reply went out.
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    await sent_messages(fake_twilio, 1)
    cid = thread(channel)
    made = await make_schedule(
        client, user, conversation_id=cid, cron="0 8 * * *", prompt="Remind me to water the plants"
    )
    clock.advance(hours=1)
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "posted"
    _, reminder = await sent_messages(fake_twilio, 2)
    assert (reminder.to, reminder.from_) == (SENDER, OUR_NUMBER)
    assert reminder.body == fake_llm.state.config.reply
    stored = await messages_of(client, user, cid)
    prompt = next(m for m in stored if m["message_id"] == outcome.message_id)
    assert prompt["metadata"]["source"] == "schedule"
    assert prompt["metadata"]["schedule_id"] == made["id"]


async def test_a_disabled_owner_fails_the_run_and_disables_the_schedule(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    admin, user = await make_user(client), await make_user(client)
    made, _ = await daily(client, user)
    disabled = await client.patch(
        f"/api/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text
    clock.advance(hours=1)
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "failed"
    assert await posted_prompts(services) == []
    async with services.sessionmaker() as session:
        schedule = await session.get(Schedule, made["id"])
        assert schedule is not None and schedule.enabled is False
        assert "user_disabled" in (schedule.disabled_reason or "")
