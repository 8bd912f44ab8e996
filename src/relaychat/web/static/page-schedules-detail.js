// One schedule (/schedules/<id>): what it posts where and when, its next runs, Run now,
// edit, on/off, delete; and its runs, newest first, page by page.
//
// Live while open: a message event is the cue that a run posted or its reply moved on, so the
// history reloads; and while a run shown is pending, running or its reply streaming, it is
// polled every 2 s until it settles (a run being claimed sends no event to the browser).
import { api } from "./api.js";
import { h, query, statusLine, table, when } from "./ui.js";
import { keysetRows } from "./paged.js";
import {
  deleteSchedule,
  loadChoices,
  nextRunsList,
  region,
  replyState,
  runNow,
  runState,
  scheduleForm,
  schedulePath,
  stateOf,
  targetOf,
  unsettled,
  withConversation,
} from "./page-schedules-form.js";
import { timingWords } from "./page-schedules-time.js";

const POLL_MS = 2000;
const CUES = new Set(["message.created", "message.completed", "message.failed"]);
const TRIGGERS = { schedule: "on time", catch_up: "caught up", manual: "run now" };

function facts(pairs) {
  return h(
    "dl",
    { class: "sc-facts" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

export async function mountSchedule(root, ctx) {
  const back = h("p", { class: "sc-back" }, h("a", { href: "/schedules", "data-nav": true }, "← All schedules"));
  let schedule;
  try {
    schedule = await api("GET", schedulePath(ctx.sub));
  } catch (error) {
    if (error?.status !== 404) throw error;
    ctx.setTitle("Schedule not found");
    root.append(back, region("Not found", h("p", {}, "You have no schedule with this id; it may have been deleted.")));
    return undefined;
  }
  const choices = await loadChoices();
  choices.convos = await withConversation(choices.convos, schedule.conversation_id);
  let stopped = false;
  let timer = 0;
  let cue = 0;

  const status = statusLine();
  const summary = h("div");
  const editSlot = h("div", { hidden: true });
  const about = region("Schedule", summary, editSlot, status.node);
  const upcoming = region("Next runs");
  const history = h("div");
  const said = statusLine();
  const rows = keysetRows({
    fetchPage: async (before, limit) => {
      const page = await api("GET", `${schedulePath(schedule.id)}/runs${query({ limit, before })}`);
      return { list: page.runs, next: page.next_before };
    },
    render: drawRuns,
    fail: (error) => said.fail(error),
  });
  const runsRegion = region(
    "Run history",
    h("p", { class: "muted" }, "Newest first: when it ran, where it posted, and how the reply went."),
    said.node,
    history,
    rows.more,
  );
  root.append(back, about, upcoming, runsRegion);

  function showSchedule() {
    ctx.setTitle(`Schedule ${schedule.name}`);
    const limit = schedule.max_runs ? `${schedule.run_count} of ${schedule.max_runs}` : `${schedule.run_count}`;
    summary.replaceChildren(
      facts([
        ["Name", schedule.name],
        ["Posts into", targetOf(schedule, choices)],
        ["Prompt", h("span", { class: "sc-prompt" }, schedule.prompt)],
        ["When", timingWords(schedule)],
        ["Timezone", h("code", {}, schedule.timezone)],
        schedule.until ? ["Until", when(schedule.until)] : null,
        ["Runs on its times", h("span", {}, limit, h("small", { class: "muted" }, " (Run now is not counted)"))],
        ["Missed runs", schedule.catch_up === "once" ? "the latest runs once" : "skipped"],
        ["State", stateOf(schedule)],
        ["Next run", schedule.enabled ? when(schedule.next_run_at, "none left") : h("span", { class: "muted" }, "—")],
      ]),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: () => runIt() }, "Run now"),
        h("button", { type: "button", onclick: edit }, "Edit"),
        h(
          "button",
          {
            type: "button",
            onclick: () => act(async () => {
              schedule = await api("PATCH", schedulePath(schedule.id), { enabled: !schedule.enabled });
              status.say(schedule.enabled ? "Enabled: it runs at its next time." : "Disabled: it runs only when you say Run now.");
            }),
          },
          schedule.enabled ? "Disable" : "Enable",
        ),
        h(
          "button",
          {
            type: "button",
            onclick: () => act(async () => {
              if (await deleteSchedule(schedule)) ctx.navigate("/schedules");
            }),
          },
          "Delete",
        ),
      ),
    );
    upcoming.replaceChildren(
      upcoming.querySelector("h2"),
      h("p", { class: "muted" }, "As the server plans them, on the clocks of ", h("code", {}, schedule.timezone), "."),
      nextRunsList(schedule),
    );
  }

  function edit() {
    const form = scheduleForm({
      schedule,
      choices,
      submitLabel: "Save changes",
      cancel: closeEditor,
      submit: async (body) => {
        if (Object.keys(body).length) schedule = await api("PATCH", schedulePath(schedule.id), body);
        closeEditor();
        status.say("Saved: see its next runs below.");
        showSchedule();
      },
    });
    editSlot.replaceChildren(h("h3", {}, "Edit"), form);
    editSlot.hidden = false;
    form.elements.name.focus();
  }

  function closeEditor() {
    editSlot.hidden = true;
    editSlot.replaceChildren();
  }

  async function act(run) {
    try {
      await run();
      if (!stopped) showSchedule();
    } catch (error) {
      status.fail(error);
    }
  }

  async function runIt() {
    try {
      const run = await runNow(schedule);
      rows.items = [run, ...rows.items.filter((r) => r.id !== run.id)];
      rows.show();
      said.say("Run requested: it shows below as it posts and the reply comes.");
      await refresh();
    } catch (error) {
      said.fail(error);
    }
  }

  function conversationOf(run) {
    if (!run.conversation_id) return h("span", { class: "muted" }, "—");
    const convo = choices.convos.find((c) => c.conversation_id === run.conversation_id);
    return h(
      "a",
      { href: `/c/${encodeURIComponent(run.conversation_id)}`, "data-nav": true },
      convo?.title || "Open the conversation",
    );
  }

  /** The table of the runs loaded (rows.show() draws it, then its Load more). */
  function drawRuns() {
    history.replaceChildren(
      table(
        [
          { label: "Time", cell: (r) => when(r.occurrence_at) },
          { label: "Trigger", cell: (r) => TRIGGERS[r.trigger] || r.trigger },
          { label: "State", cell: runState },
          { label: "Conversation", cell: conversationOf },
          { label: "Reply", cell: replyState },
          {
            label: "Error",
            cell: (r) => {
              const text = r.error || (r.missed > 1 ? `stands for ${r.missed} missed times` : "");
              return text ? h("span", { class: "sc-error" }, text) : h("span", { class: "muted" }, "—");
            },
          },
        ],
        rows.items,
        "No runs yet: the first comes at its next time, or now with Run now.",
      ),
    );
  }

  let running = null;
  let again = false;
  const missing = new Set(); // conversations of runs that are gone: not asked for again

  /** The schedule and every run shown (up to 100), read again; one read at a time, and a
   * request meanwhile reads once more after it. */
  function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await read();
      } while (again && !stopped);
    })().finally(() => {
      running = null;
      clearTimeout(timer);
      if (!stopped && rows.items.some(unsettled)) timer = setTimeout(refresh, POLL_MS);
    });
    return running;
  }

  async function read() {
    try {
      const [current, fresh] = await Promise.all([api("GET", schedulePath(schedule.id)), rows.fetchFresh()]);
      if (stopped) return;
      schedule = current;
      if (editSlot.hidden) showSchedule();
      rows.merge(fresh);
      // A run's conversation may be one made for it (an agent's): name it when it is known.
      for (const run of rows.items) {
        const id = run.conversation_id;
        if (!id || missing.has(id) || choices.convos.some((c) => c.conversation_id === id)) continue;
        choices.convos = await withConversation(choices.convos, id);
        if (!choices.convos.some((c) => c.conversation_id === id)) missing.add(id);
      }
      rows.show();
    } catch (error) {
      if (error?.status === 404 && !stopped) {
        stopped = true; // deleted elsewhere
        ctx.navigate("/schedules");
        return;
      }
      said.fail(error);
    }
  }

  const unsubscribe = ctx.onEvent((event) => {
    if (!CUES.has(event.type)) return;
    clearTimeout(cue);
    cue = setTimeout(refresh, 250);
  });

  showSchedule();
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(cue);
    unsubscribe();
  };
}
