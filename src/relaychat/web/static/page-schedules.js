// The Schedules page. /schedules: the person's schedules (where, when, the next run, on/off,
// the last run), the form to make one or edit one, with the server's next runs once saved;
// Run now and Delete. `/schedules?conversation=<id>` (a conversation's "Schedule this")
// opens the form on that conversation. /schedules/<id>: one schedule and its runs
// (page-schedules-detail.js).
import { api } from "./api.js";
import { h, statusLine, table, useStyles, when } from "./ui.js";
import {
  deleteSchedule,
  enabledSwitch,
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
import { mountSchedule } from "./page-schedules-detail.js";

const POLL_MS = 2000;
const CUES = new Set(["message.created", "message.completed", "message.failed"]);

export async function mount(root, ctx) {
  useStyles("page-schedules.css");
  if (ctx.sub) return mountSchedule(root, ctx);
  ctx.setTitle("Schedules");
  const asked = new URLSearchParams(location.search).get("conversation");
  const choices = await loadChoices();
  choices.convos = await withConversation(choices.convos, asked);
  let schedules = [];
  let stopped = false;
  let timer = 0;
  let cue = 0;

  const status = statusLine();
  const listBody = h("div");
  const list = region(
    "Your schedules",
    h("p", { class: "muted" }, "Each posts its prompt into a conversation at its times, as you; the conversation's model or agent answers. Open one to see its runs."),
    status.node,
    listBody,
  );
  const saved = h("section", { class: "panel card sc-panel sc-saved", hidden: true, "aria-labelledby": "sc-saved-title", tabindex: "-1" });
  const editor = region("New schedule");
  root.append(list, saved, editor);

  async function reload() {
    ({ schedules } = await api("GET", "/api/schedules"));
    if (stopped) return;
    listBody.replaceChildren(
      table(
        [
          {
            label: "Name",
            cell: (s) => h("a", { href: `/schedules/${encodeURIComponent(s.id)}`, "data-nav": true }, s.name),
          },
          { label: "Posts into", cell: (s) => targetOf(s, choices) },
          {
            label: "When",
            cell: (s) => h("span", { class: "sc-when" }, timingWords(s), h("small", { class: "muted" }, s.timezone)),
          },
          { label: "Next run", cell: (s) => (s.enabled ? when(s.next_run_at, "none left") : stateOf(s)) },
          {
            label: "Enabled",
            cell: (s) => enabledSwitch(s, (enabled) => act(async () => {
              await api("PATCH", schedulePath(s.id), { enabled });
              status.say(`${enabled ? "Enabled" : "Disabled"} “${s.name}”.`);
            })),
          },
          { label: "Last run", cell: lastRunOf },
          { label: "Actions", cell: actionsOf },
        ],
        schedules,
        "No schedules yet: make one below, or choose “Schedule” in a conversation's menu.",
      ),
    );
    schedulePoll();
  }

  function lastRunOf(s) {
    const run = s.last_run;
    if (!run) return h("span", { class: "muted" }, "never");
    return h(
      "span",
      { class: "sc-last", title: run.error || null },
      h("span", { class: "sc-pills" }, runState(run), run.status === "posted" ? replyState(run) : null),
      when(run.occurrence_at),
    );
  }

  function actionsOf(s) {
    const named = (verb) => `${verb} “${s.name}”`;
    return h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": named("Run now"), onclick: () => act(async () => {
        await runNow(s);
        status.say(`“${s.name}” runs now: its run appears in its history.`);
      }) }, "Run now"),
      h("button", { type: "button", class: "small", "aria-label": named("Edit"), onclick: () => edit(s) }, "Edit"),
      h("button", { type: "button", class: "small", "aria-label": named("Delete"), onclick: () => act(async () => {
        if (!(await deleteSchedule(s))) return;
        if (editor.dataset.schedule === s.id) showCreate();
        status.say(`Deleted “${s.name}”.`);
      }) }, "Delete"),
    );
  }

  async function act(run) {
    try {
      await run();
    } catch (error) {
      status.fail(error);
    }
    await reload().catch((error) => status.fail(error));
  }

  /** What the server planned for the schedule just saved: its next runs, read back. */
  function showSaved(schedule, verb) {
    saved.replaceChildren(
      h("h2", { id: "sc-saved-title" }, `${verb} “${schedule.name}”`),
      h("p", {}, "Its next runs, in ", h("code", {}, schedule.timezone), ":"),
      nextRunsList(schedule),
      h("p", {}, h("a", { href: `/schedules/${encodeURIComponent(schedule.id)}`, "data-nav": true }, "Open it and its run history")),
    );
    saved.hidden = false;
  }

  function showForm(title, form, scheduleId = "") {
    editor.dataset.schedule = scheduleId;
    editor.querySelector("h2").textContent = title;
    editor.replaceChildren(editor.querySelector("h2"), form);
  }

  function showCreate(conversationId = null) {
    const form = scheduleForm({
      conversationId,
      choices,
      submitLabel: "Create schedule",
      submit: async (body) => {
        const created = await api("POST", "/api/schedules", body);
        showSaved(created, "Created");
        showCreate();
        await reload();
        saved.focus();
      },
    });
    showForm("New schedule", form);
    return form;
  }

  function edit(schedule) {
    const form = scheduleForm({
      schedule,
      choices,
      submitLabel: "Save changes",
      cancel: () => {
        showCreate();
        list.querySelector("h2").scrollIntoView({ block: "nearest" });
      },
      submit: async (body) => {
        const changed = Object.keys(body).length ? await api("PATCH", schedulePath(schedule.id), body) : schedule;
        showSaved(changed, "Saved");
        showCreate();
        await reload();
        saved.focus();
      },
    });
    showForm(`Edit “${schedule.name}”`, form, schedule.id);
    form.elements.name.focus();
  }

  /** While a shown last run may still change, read the list again every 2 s. */
  function schedulePoll() {
    clearTimeout(timer);
    if (stopped) return;
    if (schedules.some((s) => s.last_run && unsettled(s.last_run))) {
      timer = setTimeout(() => reload().catch((error) => status.fail(error)), POLL_MS);
    }
  }

  const unsubscribe = ctx.onEvent((event) => {
    if (!CUES.has(event.type)) return;
    // A burst of events (a run's message, then its reply) costs one reload.
    clearTimeout(cue);
    cue = setTimeout(() => reload().catch((error) => status.fail(error)), 250);
  });

  const form = showCreate(asked);
  await reload();
  if (asked) {
    // "Schedule this": the form is what the person came for.
    editor.scrollIntoView({ block: "start" });
    form.elements.name.focus();
  }
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(cue);
    unsubscribe();
  };
}
