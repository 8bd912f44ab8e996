"""The schedules API, and runs posted by the scheduler with the time in the test's hands."""

from __future__ import annotations

import httpx
import pytest

from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.chat import make_agent, messages_of, wait_generation
from tests.support.factories import make_conversation, make_user
from tests.support.schedules import make_schedule, manual_time, runs_of


async def test_create_answers_the_next_five_runs_in_both_timezones(
    client: httpx.AsyncClient, services: Services
) -> None:
    await manual_time(services)
    user = await make_user(client)
    conversation = await make_conversation(client, user, endpoint="fake")
    made = await make_schedule(
        client,
        user,
        conversation_id=conversation["conversation_id"],
        rrule="FREQ=DAILY;BYHOUR=8",
        timezone="Europe/Paris",
    )
    assert made["kind"] == "rrule" and made["enabled"] is True and made["catch_up"] == "skip"
    assert [r["local"] for r in made["next_runs"]] == [
        f"2026-06-0{d}T08:00:00+02:00" for d in range(2, 7)
    ]
    assert [r["utc"] for r in made["next_runs"]] == [f"2026-06-0{d}T06:00:00Z" for d in range(2, 7)]
    assert made["next_run_at"] == "2026-06-02T06:00:00Z"
    listed = await client.get("/api/schedules", headers=user.headers)
    assert [s["id"] for s in listed.json()["schedules"]] == [made["id"]]
    got = await client.get(f"/api/schedules/{made['id']}", headers=user.headers)
    assert got.json() == made


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"rrule": "FREQ=SOMETIMES"}, 422, "invalid_recurrence"),
        ({"cron": "every morning"}, 422, "invalid_recurrence"),
        ({"at": "2020-01-01T08:00"}, 422, "validation_error"),
        ({"cron": "0 8 * * *", "timezone": "Mars/Olympus"}, 422, "invalid_timezone"),
        ({"rrule": "FREQ=SECONDLY;INTERVAL=10"}, 422, "schedule_too_frequent"),
        ({"cron": "0 8 * * *", "rrule": "FREQ=DAILY"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
    ],
)
async def test_bad_times_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    services: Services,
    clean_backend: Backend,
    fields: dict[str, str],
    status: int,
    code: str,
) -> None:
    await manual_time(services)
    user = await make_user(client)
    conversation = await make_conversation(client, user, endpoint="fake")
    before = await row_counts(clean_backend)
    response = await client.post(
        "/api/schedules",
        json={
            "name": "bad",
            "prompt": "hi",
            "conversation_id": conversation["conversation_id"],
            **fields,
        },
        headers=user.headers,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert await row_counts(clean_backend) == before


async def test_too_many_schedules_is_a_conflict(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.settings.schedule_max_per_user = 2
    await manual_time(services)
    user = await make_user(client)
    agent = await make_agent(client, user)
    for _ in range(2):
        await make_schedule(client, user, agent_id=agent["agent_id"], cron="0 8 * * *")
    refused = await client.post(
        "/api/schedules",
        json={"name": "3rd", "prompt": "hi", "agent_id": agent["agent_id"], "cron": "0 9 * * *"},
        headers=user.headers,
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "schedule_limit_reached"
    # Another user has a quota of their own.
    other = await make_user(client)
    theirs = await make_agent(client, other)
    await make_schedule(client, other, agent_id=theirs["agent_id"], cron="0 8 * * *")


async def test_another_users_conversation_or_private_agent_is_refused_as_missing(
    client: httpx.AsyncClient, services: Services
) -> None:
    await manual_time(services)
    alice, bob = await make_user(client), await make_user(client)
    conversation = await make_conversation(client, alice, endpoint="fake")
    agent = await make_agent(client, alice)
    for body, code in (
        ({"conversation_id": conversation["conversation_id"]}, "conversation_not_found"),
        ({"agent_id": agent["agent_id"]}, "agent_not_found"),
    ):
        response = await client.post(
            "/api/schedules",
            json={"name": "x", "prompt": "hi", "cron": "0 8 * * *", **body},
            headers=bob.headers,
        )
        assert response.status_code == 404, response.text
        assert response.json()["code"] == code


async def test_a_due_run_posts_the_prompt_and_the_model_answers(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    conversation = await make_conversation(client, user, endpoint="fake")
    cid = conversation["conversation_id"]
    made = await make_schedule(client, user, conversation_id=cid, cron="0 8 * * *")
    assert await services.scheduler.run_once() == []  # not yet: 07:00
    clock.advance(hours=1, seconds=1)
    [outcome] = await services.scheduler.run_once()
    assert outcome.status == "posted"
    [run] = await runs_of(client, user, made["id"])
    assert run["status"] == "posted" and run["trigger"] == "schedule"
    assert run["occurrence_at"] == "2026-06-01T08:00:00Z"
    assert run["conversation_id"] == cid and run["message_id"] == outcome.message_id
    stored = await messages_of(client, user, cid)
    prompt = next(m for m in stored if m["message_id"] == run["message_id"])
    assert prompt["role"] == "external"
    assert prompt["metadata"]["source"] == "schedule"
    assert prompt["metadata"]["schedule_id"] == made["id"]
    await wait_generation(client, user, run["generation_id"])
    [reply] = [m for m in await messages_of(client, user, cid) if m["role"] == "assistant"]
    assert reply["message_id"] == run["reply_message_id"]
    [run] = await runs_of(client, user, made["id"])
    assert run["reply_status"] == "complete"
    # The next tick posts nothing more; the next day's time comes.
    assert await services.scheduler.run_once() == []
    got = (await client.get(f"/api/schedules/{made['id']}", headers=user.headers)).json()
    assert got["next_run_at"] == "2026-06-02T08:00:00Z" and got["run_count"] == 1
    assert got["last_run_at"] is not None
    assert got["last_run"] == run


async def test_each_schedule_lists_its_own_newest_run(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    hourly = await make_schedule(client, user, conversation_id=cid, cron="0 * * * *")
    daily = await make_schedule(client, user, conversation_id=cid, cron="30 9 * * *")
    never = await make_schedule(client, user, conversation_id=cid, cron="0 3 * * *")
    for _ in range(3):  # 08:00, 09:00 and 09:30 (daily), 10:00
        clock.advance(hours=1, seconds=1)
        await services.scheduler.run_once()
    # Once every reply has ended, the list and the runs are read in the same state.
    for schedule in (hourly, daily):
        for run in await runs_of(client, user, schedule["id"]):
            if run["generation_id"]:  # a run skipped as missed has none
                await wait_generation(client, user, run["generation_id"])
    listed = (await client.get("/api/schedules", headers=user.headers)).json()["schedules"]
    last = {s["id"]: s["last_run"] for s in listed}
    assert last[never["id"]] is None
    assert last[hourly["id"]] == (await runs_of(client, user, hourly["id"]))[0]
    assert last[hourly["id"]]["occurrence_at"] == "2026-06-01T10:00:00Z"
    assert last[daily["id"]]["occurrence_at"] == "2026-06-01T09:30:00Z"
    assert len(await runs_of(client, user, hourly["id"])) == 3


async def test_patch_replans_and_refuses_bad_changes_whole(
    client: httpx.AsyncClient, services: Services
) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    conversation = await make_conversation(client, user, endpoint="fake")
    made = await make_schedule(
        client, user, conversation_id=conversation["conversation_id"], cron="0 8 * * *"
    )
    path = f"/api/schedules/{made['id']}"
    moved = await client.patch(
        path,
        json={"rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=18", "name": "weekly"},
        headers=user.headers,
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["kind"], body["cron"], body["name"]) == ("rrule", None, "weekly")
    assert body["next_runs"][0]["utc"] == "2026-06-05T18:00:00Z"
    for bad, code in (
        ({"cron": "nope", "name": "never"}, "invalid_recurrence"),
        ({"timezone": "Nowhere/Land", "name": "never"}, "invalid_timezone"),
        ({"name": None}, "validation_error"),
    ):
        refused = await client.patch(path, json=bad, headers=user.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == code
    assert (await client.get(path, headers=user.headers)).json() == body
    paused = (await client.patch(path, json={"enabled": False}, headers=user.headers)).json()
    assert paused["enabled"] is False and paused["next_runs"] == []
    clock.advance(days=10)  # 11 June, a Thursday
    resumed = (await client.patch(path, json={"enabled": True}, headers=user.headers)).json()
    assert resumed["next_runs"][0]["utc"] == "2026-06-12T18:00:00Z"
    assert await services.scheduler.run_once() == []  # nothing caught up from the pause
    in_paris = (
        await client.patch(path, json={"timezone": "Europe/Paris"}, headers=user.headers)
    ).json()
    assert in_paris["next_runs"][0]["local"] == "2026-06-12T18:00:00+02:00"
    deleted = await client.delete(path, headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(path, headers=user.headers)
    assert gone.status_code == 404 and gone.json()["code"] == "schedule_not_found"


async def test_max_runs_ends_a_schedule(client: httpx.AsyncClient, services: Services) -> None:
    clock = await manual_time(services)
    user = await make_user(client)
    agent = await make_agent(client, user)
    made = await make_schedule(
        client, user, agent_id=agent["agent_id"], cron="0 8 * * *", max_runs=2
    )
    assert len(made["next_runs"]) == 2
    clock.advance(hours=1)  # 08:00, then the next days at 08:00
    for _ in range(3):
        await services.scheduler.run_once()
        clock.advance(days=1)
    runs = await runs_of(client, user, made["id"])
    assert [(r["occurrence_at"], r["status"]) for r in runs] == [
        ("2026-06-02T08:00:00Z", "posted"),
        ("2026-06-01T08:00:00Z", "posted"),
    ]
    got = (await client.get(f"/api/schedules/{made['id']}", headers=user.headers)).json()
    assert got["run_count"] == 2 and got["next_run_at"] is None and got["next_runs"] == []
    for run in runs:
        await wait_generation(client, user, run["generation_id"])


async def test_patch_moves_a_schedule_between_an_agent_and_a_conversation(
    client: httpx.AsyncClient, services: Services
) -> None:
    await manual_time(services)
    user = await make_user(client)
    agent = await make_agent(client, user)
    conversation = await make_conversation(client, user, endpoint="fake")
    made = await make_schedule(
        client, user, agent_id=agent["agent_id"], new_conversation=True, cron="0 8 * * *"
    )
    path = f"/api/schedules/{made['id']}"
    moved = await client.patch(
        path, json={"conversation_id": conversation["conversation_id"]}, headers=user.headers
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["agent_id"], moved.json()["new_conversation"]) == (None, False)
    back = await client.patch(path, json={"agent_id": agent["agent_id"]}, headers=user.headers)
    assert back.status_code == 200, back.text
    assert (back.json()["conversation_id"], back.json()["agent_id"]) == (None, agent["agent_id"])
