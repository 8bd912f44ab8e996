"""The Schedules page: make a daily schedule with the builder and read the server's next
runs; a refused rule's error lands next to its field; Run now posts into the conversation,
the fake model answers and the run shows in the history; "Schedule" in a conversation's
menu opens the form on it, and all of that works from the keyboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Dialog, Locator, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.test_markup_is_inert import INJECTED, PAYLOAD, PAYLOADS
from tests.browser.ui import console_screenshots, messages, sign_in

TIMEOUT = 20_000


@contextmanager
def api_client(server: Server, person: Person) -> Iterator[httpx.Client]:
    """The person's API session, as another program of theirs would hold it."""
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        assert login.status_code == 200, login.text
        http.headers["authorization"] = f"Bearer {login.json()['access_token']}"
        yield http


def conversation(http: httpx.Client, title: str) -> str:
    created = http.post("/api/convos", json={"title": title, "endpoint": "fake"})
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["conversation_id"]
    return conversation_id


def open_schedules(page: Page) -> None:
    page.get_by_role("link", name="Schedules", exact=True).click()
    expect(page.get_by_role("heading", name="Your schedules")).to_be_visible()


def editor(page: Page) -> Locator:
    return page.get_by_role("region", name=re.compile(r"^(New schedule|Edit )"))


def error_next_to(control: Locator) -> Locator:
    """The alert inside the field that holds `control` (where bindForm puts it)."""
    return control.locator("xpath=ancestor::*[contains(@class, 'field')][1]").get_by_role("alert")


def test_daily_schedule_from_the_page_with_its_next_runs(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with api_client(server, person) as http:
        conversation_id = conversation(http, "Morning notes")
    sign_in(page, server, person)
    open_schedules(page)
    expect(page).to_have_url(f"{server.url}/schedules")
    expect(page.get_by_text("No schedules yet")).to_be_visible()

    form = editor(page)
    # The timezone starts as the browser's (Chromium here runs in UTC unless told).
    browser_zone: str = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    expect(form.get_by_label("Timezone")).to_have_value(browser_zone)
    form.get_by_label("Name").fill("Morning briefing")
    form.get_by_role("button", name="Create schedule").click()
    chooser = form.get_by_label("Conversation", exact=True)
    expect(error_next_to(chooser)).to_have_text("Choose a conversation.")
    expect(chooser).to_be_focused()
    chooser.select_option(label="Morning notes")
    form.get_by_label("Prompt").fill("What is on my calendar today?")
    expect(form.get_by_label("Repeat", exact=True)).to_have_value("daily")
    form.get_by_label("At", exact=True).fill("07:30")
    # The builder writes its rule where a power user reads it.
    expect(form.get_by_label("RRULE")).to_have_value("FREQ=DAILY;BYHOUR=7;BYMINUTE=30")
    form.get_by_label("Timezone").fill("Europe/Paris")

    # A rule the server refuses: its problem+json lands next to the RRULE field, and
    # typing a rule by hand leaves the builder for "Custom RRULE".
    rrule = form.get_by_label("RRULE")
    rrule.fill("FREQ=SOMETIMES;BYHOUR=7")
    expect(form.get_by_label("Repeat", exact=True)).to_have_value("rrule")
    form.get_by_role("button", name="Create schedule").click()
    expect(error_next_to(rrule)).to_contain_text("rrule")
    expect(rrule).to_have_attribute("aria-invalid", "true")
    expect(rrule).to_be_focused()
    page.screenshot(path=artifacts / "schedules-error-1280.png")
    # So does an unknown timezone's.
    rrule.fill("FREQ=DAILY;BYHOUR=7;BYMINUTE=30")
    form.get_by_label("Timezone").fill("Mars/Olympus_Mons")
    form.get_by_role("button", name="Create schedule").click()
    expect(error_next_to(form.get_by_label("Timezone"))).to_contain_text("timezone")
    expect(error_next_to(rrule)).to_have_count(0)
    form.get_by_label("Timezone").fill("Europe/Paris")
    form.get_by_label("Repeat", exact=True).select_option("daily")
    form.get_by_role("button", name="Create schedule").click()

    # Saved: the server's next five runs, at 07:30 Paris time, and a fresh form.
    saved = page.get_by_role("region", name="Created “Morning briefing”")
    expect(saved).to_be_visible()
    nexts = saved.get_by_role("listitem")
    expect(nexts).to_have_count(5)
    for i in range(5):
        expect(nexts.nth(i)).to_contain_text(re.compile(r"07:30 \(\+0[12]:00\)"))
    expect(editor(page).get_by_label("Name")).to_have_value("")
    row = page.get_by_role("row").filter(has_text="Morning briefing")
    expect(row).to_contain_text("Every day at 07:30")
    expect(row).to_contain_text("Europe/Paris")
    expect(row.get_by_role("link", name="Morning notes")).to_have_attribute(
        "href", f"/c/{conversation_id}"
    )
    expect(row).to_contain_text("never")  # no run yet
    expect(row.get_by_role("switch", name="Enabled: Morning briefing")).to_be_checked()
    with api_client(server, person) as http:
        (schedule,) = http.get("/api/schedules").json()["schedules"]
    assert schedule["rrule"] == "FREQ=DAILY;BYHOUR=7;BYMINUTE=30"
    assert schedule["timezone"] == "Europe/Paris"
    assert schedule["conversation_id"] == conversation_id

    # A weekly one beside it, then the list at every size (light and dark).
    form = editor(page)
    form.get_by_label("Name").fill("Weekly review")
    form.get_by_label("Conversation", exact=True).select_option(label="Morning notes")
    form.get_by_label("Prompt").fill("Summarise my week.")
    form.get_by_label("Repeat", exact=True).select_option("weekly")
    form.get_by_label("At", exact=True).fill("17:00")
    form.get_by_role("checkbox", name="Fri").check()
    expect(form.get_by_label("RRULE")).to_have_value("FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0")
    form.get_by_label("Timezone").fill("America/New_York")
    form.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("region", name="Created “Weekly review”")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Weekly review")).to_contain_text(
        "Every Friday at 17:00"
    )

    # Off and on again from the list.
    switch = row.get_by_role("switch", name="Enabled: Morning briefing")
    switch.uncheck()
    said = page.get_by_role("status")
    expect(said.filter(has_text="Disabled “Morning briefing”")).to_be_visible()
    expect(row.get_by_role("switch", name="Enabled: Morning briefing")).not_to_be_checked()
    expect(row).to_contain_text("Disabled")
    row.get_by_role("switch", name="Enabled: Morning briefing").check()
    expect(said.filter(has_text="Enabled “Morning briefing”")).to_be_visible()
    expect(row).not_to_contain_text("Disabled")
    expect(row.get_by_role("switch", name="Enabled: Morning briefing")).to_be_checked()

    console_screenshots(page, artifacts, "schedules")

    # Edit: the form comes back filled, the builder read back from the rule.
    page.set_viewport_size({"width": 1280, "height": 860})
    row.get_by_role("button", name="Edit “Morning briefing”").click()
    form = editor(page)
    expect(form.get_by_role("heading")).to_have_text("Edit “Morning briefing”")
    expect(form.get_by_label("Repeat", exact=True)).to_have_value("daily")
    expect(form.get_by_label("At", exact=True)).to_have_value("07:30")
    form.get_by_label("At", exact=True).fill("06:45")
    form.get_by_role("button", name="Save changes").click()
    saved = page.get_by_role("region", name="Saved “Morning briefing”")
    expect(saved.get_by_role("listitem").first).to_contain_text("06:45")
    expect(row).to_contain_text("Every day at 06:45")

    # Delete, after saying so.
    row.get_by_role("button", name="Delete “Morning briefing”").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Morning briefing")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("row").filter(has_text="Morning briefing")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text="Weekly review")).to_have_count(1)


def test_run_now_posts_and_the_run_shows_in_the_history(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with api_client(server, person) as http:
        conversation_id = conversation(http, "Plant care")
        created = http.post(
            "/api/schedules",
            json={
                "name": "Plants",
                "conversation_id": conversation_id,
                "cron": "0 8 * * *",
                "timezone": "Europe/Paris",
                "prompt": "Remind me to water the plants.",
            },
        )
        assert created.status_code == 201, created.text
    sign_in(page, server, person)
    open_schedules(page)
    page.get_by_role("link", name="Plants", exact=True).click()
    expect(page).to_have_url(re.compile(r"/schedules/[^/]+$"))
    about = page.get_by_role("region", name="Schedule", exact=True)
    expect(about).to_contain_text("Every day at 08:00")
    expect(about).to_contain_text("Remind me to water the plants.")
    upcoming = page.get_by_role("region", name="Next runs")
    expect(upcoming.get_by_role("listitem")).to_have_count(5)
    expect(upcoming.get_by_role("listitem").first).to_contain_text("08:00 (+01:00)")
    runs = page.get_by_role("region", name="Run history")
    expect(runs).to_contain_text("No runs yet")

    about.get_by_role("button", name="Run now").click()
    run = runs.get_by_role("row").filter(has_text="run now")
    expect(run).to_have_count(1)
    expect(run).to_contain_text("posted", timeout=TIMEOUT)
    expect(run).to_contain_text("complete", timeout=TIMEOUT)  # the fake model's reply
    expect(run.get_by_role("link", name="Plant care")).to_be_visible()
    expect(about).to_contain_text("Runs on its times")
    console_screenshots(page, artifacts, "schedule-runs")
    page.set_viewport_size({"width": 1280, "height": 860})

    # The run's conversation: the prompt as posted, and the model's answer.
    run.get_by_role("link", name="Plant care").click()
    expect(page).to_have_url(f"{server.url}/c/{conversation_id}")
    expect(messages(page).nth(0)).to_contain_text("Remind me to water the plants.")
    expect(messages(page).nth(1)).to_contain_text("def greet", timeout=TIMEOUT)


def test_schedule_this_from_a_conversation_menu_by_keyboard(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with api_client(server, person) as http:
        conversation_id = conversation(http, "Trip to Lisbon")
        conversation(http, "Team lunch poll")
    sign_in(page, server, person)
    schedule = page.get_by_role("button", name="Schedule Trip to Lisbon")
    schedule.focus()
    page.screenshot(path=artifacts / "schedule-this-menu-1280.png")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/schedules?conversation={conversation_id}")
    form = editor(page)
    expect(form.get_by_label("Conversation", exact=True)).to_have_value(conversation_id)
    name = form.get_by_label("Name")
    expect(name).to_be_focused()

    # Only the keyboard from here: type, Tab along, tick with Space, submit with Enter.
    page.keyboard.type("Packing reminder")
    page.keyboard.press("Tab")  # the "Post into" radios: a conversation is chosen
    expect(form.get_by_role("radio", name="A conversation")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Conversation", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Prompt")).to_be_focused()
    page.keyboard.type("What should I pack for Lisbon?")
    page.keyboard.press("Tab")  # the "When" radios: Repeatedly
    expect(form.get_by_role("radio", name="Repeatedly")).to_be_focused()
    page.keyboard.press("Tab")
    repeat = form.get_by_label("Repeat", exact=True)
    expect(repeat).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(repeat).to_have_value("weekly")
    page.keyboard.press("Tab")
    expect(form.get_by_label("At", exact=True)).to_be_focused()
    monday = form.get_by_role("checkbox", name="Mon")
    monday.focus()
    page.keyboard.press("Space")
    expect(monday).to_be_checked()
    expect(form.get_by_label("RRULE")).to_have_value("FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0")
    name.focus()
    page.keyboard.press("Enter")
    saved = page.get_by_role("region", name="Created “Packing reminder”")
    expect(saved).to_be_focused()
    expect(saved.get_by_role("listitem")).to_have_count(5)
    expect(saved.get_by_role("listitem").first).to_contain_text("Mon")
    row = page.get_by_role("row").filter(has_text="Packing reminder")
    expect(row).to_contain_text("Every Monday at 08:00")
    expect(row.get_by_role("link", name="Trip to Lisbon")).to_be_visible()

    # Run now from the list, by keyboard too; the run's state shows in the list.
    row.get_by_role("button", name="Run now “Packing reminder”").focus()
    page.keyboard.press("Enter")
    expect(row).to_contain_text("posted", timeout=TIMEOUT)
    expect(row).to_contain_text("complete", timeout=TIMEOUT)


def test_once_at_for_an_agent_then_daily_until_a_date(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with api_client(server, person) as http:
        made = http.post(
            "/api/agents", json={"name": "Travel agent", "endpoint": "fake", "model": "fake-model"}
        )
        assert made.status_code == 201, made.text
        agent_id = made.json()["agent_id"]
    sign_in(page, server, person)
    open_schedules(page)
    form = editor(page)
    form.get_by_label("Name").fill("Visa check")
    form.get_by_role("radio", name="An agent's conversation").check()
    expect(form.get_by_label("Conversation", exact=True)).to_be_hidden()
    form.get_by_label("Agent", exact=True).select_option(label="Travel agent")
    form.get_by_label("Conversations").select_option(label="A new conversation each run")
    form.get_by_label("Prompt").fill("Is my visa still valid?")
    form.get_by_role("radio", name="Once").check()
    expect(form.get_by_label("RRULE")).to_be_hidden()
    form.get_by_label("Once at").fill("2027-01-15T09:15")
    form.get_by_label("Timezone").fill("Asia/Tokyo")
    form.get_by_role("button", name="Create schedule").click()
    saved = page.get_by_role("region", name="Created “Visa check”")
    expect(saved.get_by_role("listitem")).to_have_count(1)
    expect(saved.get_by_role("listitem")).to_contain_text("Jan 15, 2027, 09:15 (+09:00)")
    row = page.get_by_role("row").filter(has_text="Visa check")
    expect(row).to_contain_text("Agent Travel agent")
    expect(row).to_contain_text("a new conversation each run")
    expect(row).to_contain_text("Once, at")

    # Its page: Run now makes a new conversation with the agent, linked from the history.
    row.get_by_role("link", name="Visa check").click()
    about = page.get_by_role("region", name="Schedule", exact=True)
    about.get_by_role("button", name="Run now").click()
    run = page.get_by_role("region", name="Run history").get_by_role("row").nth(1)
    expect(run).to_contain_text("complete", timeout=TIMEOUT)
    expect(run.get_by_role("link")).to_be_visible()

    # Edit it there into a daily one that ends on a date, on the clocks of Paris.
    about.get_by_role("button", name="Edit").click()
    form = about.get_by_role("form", name="Edit “Visa check”")
    expect(form.get_by_label("Name")).to_be_focused()
    form.get_by_role("radio", name="Repeatedly").check()
    form.get_by_label("At", exact=True).fill("09:00")
    form.get_by_label("Timezone").fill("Europe/Paris")
    form.get_by_label("Until").fill("2027-06-30T18:00")
    form.get_by_role("button", name="Save changes").click()
    expect(about.get_by_role("status")).to_contain_text("Saved")
    expect(about).to_contain_text("Every day at 09:00")
    expect(about).to_contain_text("Until")
    upcoming = page.get_by_role("region", name="Next runs")
    expect(upcoming.get_by_role("listitem").first).to_contain_text("09:00 (+01:00)")
    with api_client(server, person) as http:
        (schedule,) = http.get("/api/schedules").json()["schedules"]
    assert schedule["agent_id"] == agent_id
    assert schedule["new_conversation"] is True
    assert schedule["rrule"] == "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
    assert schedule["until"] == "2027-06-30T16:00:00Z"  # 18:00 in Paris, summer time


def test_markup_in_a_schedule_is_text(page: Page, server: Server, person: Person) -> None:
    """A schedule's name and prompt, its conversation's title and its agent's name are
    shown as text on the list, in the form and on the schedule's page."""
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    with api_client(server, person) as http:
        conversation_id = conversation(http, PAYLOADS[0])
        agent = http.post(
            "/api/agents", json={"name": PAYLOADS[1], "endpoint": "fake", "model": "fake-model"}
        )
        assert agent.status_code == 201, agent.text
        for target in (
            {"conversation_id": conversation_id},
            {"agent_id": agent.json()["agent_id"]},
        ):
            made = http.post(
                "/api/schedules",
                json={"name": PAYLOADS[2], "prompt": PAYLOAD, "cron": "0 8 * * *", **target},
            )
            assert made.status_code == 201, made.text
    sign_in(page, server, person)
    open_schedules(page)
    rows = page.get_by_role("row").filter(has_text="<svg onload")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("<script>window.__xss")  # the conversation's title
    expect(rows.last).to_contain_text("<img src=x onerror")  # the agent's name
    rows.first.get_by_role("button", name=re.compile("^Edit")).click()
    expect(editor(page).get_by_label("Prompt")).to_have_value(PAYLOAD)
    rows.first.get_by_role("link", name=PAYLOADS[2]).click()
    about = page.get_by_role("region", name="Schedule", exact=True)
    expect(about).to_contain_text("[click me](javascript:alert('link'))")
    assert page.locator(INJECTED).count() == 0
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []
