// What both schedule views share: the schedule form (create and edit), where a schedule
// posts and how its state and runs read, and the actions on one schedule.
import { api } from "./api.js";
import { bindForm, confirmAction, h, labelled, pill, section, when } from "./ui.js";
import {
  WEEKDAYS,
  browserTimezone,
  buildRrule,
  knownTimezones,
  localTime,
  parseSimpleRrule,
  utcToZoned,
  zonedToUtc,
} from "./page-schedules-time.js";

export const schedulePath = (id) => `/api/schedules/${encodeURIComponent(id)}`;

let zoneLists = 0; // each form's timezone datalist needs an id of its own

/** ui.js's section (a region named by its heading) with this page's panel rules. */
export function region(title, ...children) {
  const node = section(title, ...children);
  node.classList.add("sc-panel");
  return node;
}

/**
 * The person's conversations (the 100 most recent, not archived) and the agents they may
 * use: what a schedule may post into.
 */
export async function loadChoices() {
  const [{ conversations }, { agents }] = await Promise.all([
    api("GET", "/api/convos?limit=100"),
    api("GET", "/api/agents").catch(() => ({ agents: [] })),
  ]);
  return { convos: conversations, agents };
}

/** Make sure `id` is among `convos` (an older or archived one named by a schedule or URL). */
export async function withConversation(convos, id) {
  if (!id || convos.some((c) => c.conversation_id === id)) return convos;
  try {
    return [await api("GET", `/api/convos/${encodeURIComponent(id)}`), ...convos];
  } catch (error) {
    if (error?.status === 404) return convos;
    throw error;
  }
}

const titleOf = (convo) => convo.title || "New chat";

/** Where a schedule posts: its conversation (a link), or its agent and how. */
export function targetOf(schedule, { convos, agents }) {
  if (schedule.conversation_id) {
    const convo = convos.find((c) => c.conversation_id === schedule.conversation_id);
    return h(
      "a",
      { href: `/c/${encodeURIComponent(schedule.conversation_id)}`, "data-nav": true },
      convo ? titleOf(convo) : schedule.conversation_id,
    );
  }
  const agent = agents.find((a) => a.agent_id === schedule.agent_id);
  return h(
    "span",
    { class: "sc-target" },
    h("span", {}, "Agent ", agent ? agent.name : h("code", {}, schedule.agent_id)),
    h("small", { class: "muted" }, schedule.new_conversation ? "a new conversation each run" : "one conversation, reused"),
  );
}

const RUN_TONES = { posted: "good", failed: "bad", skipped: "warn", pending: "warn", running: "warn" };
const REPLY_TONES = { complete: "good", failed: "bad", unfinished: "warn", streaming: "warn" };

export function runState(run) {
  return pill(run.status, RUN_TONES[run.status] || "");
}

export function replyState(run) {
  if (!run.reply_status) return h("span", { class: "muted" }, run.status === "posted" ? "no reply" : "—");
  return pill(run.reply_status === "streaming" ? "replying" : run.reply_status, REPLY_TONES[run.reply_status] || "");
}

/** Whether a run may still change: the list follows it until it has settled. */
export function unsettled(run) {
  return run.status === "pending" || run.status === "running" || run.reply_status === "streaming";
}

/** The next runs the server planned, each in the schedule's timezone (UTC in its tooltip). */
export function nextRunsList(schedule) {
  if (!schedule.next_runs.length) {
    return h("p", { class: "muted" }, schedule.enabled ? "No run left: it has ended." : "None while it is disabled.");
  }
  return h(
    "ol",
    { class: "sc-next" },
    schedule.next_runs.map((run) => h("li", { title: `${run.utc} UTC` }, localTime(run.local))),
  );
}

/** The schedule's state: enabled, or disabled and why. */
export function stateOf(schedule) {
  if (schedule.enabled) return pill("Enabled", "good");
  return h(
    "span",
    { class: "sc-state" },
    pill("Disabled", "bad"),
    schedule.disabled_reason ? h("small", { class: "sc-reason" }, schedule.disabled_reason) : null,
  );
}

/** The schedule's on/off switch; `onchange(enabled)` is called with the new state. */
export function enabledSwitch(schedule, onchange) {
  const text = h("span", { "aria-hidden": "true" }, schedule.enabled ? "On" : "Off");
  const input = h("input", {
    type: "checkbox",
    role: "switch",
    checked: schedule.enabled,
    "aria-label": `Enabled: ${schedule.name}`,
    onchange: (event) => {
      const { checked } = event.currentTarget;
      text.textContent = checked ? "On" : "Off"; // at once; the list read again says the rest
      onchange(checked);
    },
  });
  return h("label", { class: "check sc-switch" }, input, text);
}

export async function runNow(schedule) {
  return api("POST", `${schedulePath(schedule.id)}/run`);
}

/** Delete after asking; resolves true once deleted. */
export async function deleteSchedule(schedule) {
  const ok = await confirmAction(
    `Delete the schedule “${schedule.name}” and its run history? The messages it posted stay. This cannot be undone.`,
  );
  if (!ok) return false;
  await api("DELETE", schedulePath(schedule.id));
  return true;
}

function radio(name, value, label, checked) {
  return h("label", { class: "check" }, h("input", { type: "radio", name, value, checked }), h("span", {}, label));
}

function field(label, control, hint) {
  return labelled(label, control, hint);
}

/** A thrown error bindForm shows next to the control named `field`. */
function invalid(field, message) {
  return Object.assign(new Error(message), { field });
}

/**
 * The schedule form: `schedule` null creates one (with `conversationId` chosen, when given),
 * else edits that one. `submit(body)` gets the API's body: all of it for a new schedule,
 * only what changed for an edit.
 */
export function scheduleForm({ schedule = null, conversationId = null, choices, submitLabel, submit, cancel }) {
  const { convos, agents } = choices;
  const original = schedule;
  const simple = schedule?.kind === "rrule" ? parseSimpleRrule(schedule.rrule) : null;
  const timezone = schedule?.timezone || browserTimezone();

  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off", value: schedule?.name ?? "" });
  const targetKind = schedule?.agent_id ? "agent" : "conversation";
  const chosenConvo = schedule?.conversation_id || conversationId || "";
  const conversation = h(
    "select",
    { name: "conversation_id" },
    h("option", { value: "" }, convos.length ? "Choose a conversation" : "No conversation yet"),
    convos.map((c) => h("option", { value: c.conversation_id, selected: c.conversation_id === chosenConvo }, titleOf(c))),
  );
  const agent = h(
    "select",
    { name: "agent_id" },
    agents.length ? null : h("option", { value: "" }, "No agent yet"),
    agents.map((a) => h("option", { value: a.agent_id, selected: a.agent_id === schedule?.agent_id }, a.name)),
  );
  const eachRun = h(
    "select",
    { name: "new_conversation" },
    h("option", { value: "false" }, "One conversation, reused by every run"),
    h("option", { value: "true", selected: Boolean(schedule?.new_conversation) }, "A new conversation each run"),
  );
  const conversationField = field("Conversation", conversation, "The prompt is posted there as you, and its model or agent answers.");
  const agentFields = h(
    "div",
    { class: "form-grid" },
    field("Agent", agent),
    field("Conversations", eachRun),
  );
  const where = h(
    "fieldset",
    { class: "sc-choice" },
    h("legend", {}, "Post into"),
    h(
      "div",
      { class: "sc-radios" },
      radio("target_kind", "conversation", "A conversation", targetKind === "conversation"),
      radio("target_kind", "agent", "An agent's conversation", targetKind === "agent"),
    ),
    conversationField,
    agentFields,
  );

  const prompt = h("textarea", { name: "prompt", required: true, rows: 3, maxlength: 100000 });
  prompt.value = schedule?.prompt ?? "";

  const whenKind = schedule?.kind === "at" ? "once" : "repeat";
  const at = h("input", { name: "at", type: "datetime-local", value: schedule?.kind === "at" ? schedule.at.slice(0, 16) : "" });
  let repeatValue = "daily";
  if (schedule?.kind === "cron") repeatValue = "cron";
  else if (schedule?.kind === "rrule") repeatValue = simple ? simple.repeat : "rrule";
  const repeat = h(
    "select",
    { name: "repeat" },
    [
      ["daily", "Every day"],
      ["weekly", "Every week, on the days ticked"],
      ["rrule", "Custom RRULE"],
      ["cron", "Cron expression"],
    ].map(([value, label]) => h("option", { value, selected: value === repeatValue }, label)),
  );
  const time = h("input", { name: "time", type: "time", value: simple?.time || "08:00" });
  const dayBoxes = WEEKDAYS.map(([code]) =>
    h("input", { type: "checkbox", name: "byday", value: code, checked: simple?.days.includes(code) ?? false }),
  );
  const days = h(
    "fieldset",
    { class: "sc-days field" },
    h("legend", {}, "On"),
    h("div", { class: "sc-day-list" }, WEEKDAYS.map(([, label], i) => h("label", { class: "check" }, dayBoxes[i], h("span", {}, label.slice(0, 3))))),
  );
  const rrule = h("input", {
    name: "rrule",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=7;BYMINUTE=30",
    value: schedule?.rrule ?? "",
  });
  const cron = h("input", {
    name: "cron",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "0 8 * * 1-5",
    value: schedule?.cron ?? "",
  });
  const onceField = field("Once at", at, "On the clocks of the timezone below.");
  const timeField = field("At", time);
  const rruleField = field("RRULE", rrule, "RFC 5545, without DTSTART or COUNT (use Max runs).");
  const cronField = field("Cron", cron, "Five fields: minute hour day month weekday.");
  const timing = h(
    "fieldset",
    { class: "sc-choice" },
    h("legend", {}, "When"),
    h(
      "div",
      { class: "sc-radios" },
      radio("when_kind", "once", "Once", whenKind === "once"),
      radio("when_kind", "repeat", "Repeatedly", whenKind === "repeat"),
    ),
    onceField,
    h("div", { class: "sc-repeat" }, h("div", { class: "form-grid" }, field("Repeat", repeat), timeField), days, rruleField, cronField),
  );

  const zoneList = h("datalist", { id: `sc-zones-${++zoneLists}` }, knownTimezones().map((zone) => h("option", { value: zone })));
  const zone = h("input", { name: "timezone", required: true, autocomplete: "off", spellcheck: "false", list: zoneList.id, value: timezone });
  const until = h("input", { name: "until", type: "datetime-local", value: utcToZoned(schedule?.until, timezone) });
  const maxRuns = h("input", { name: "max_runs", type: "number", min: 1, step: 1, inputmode: "numeric", value: schedule?.max_runs ?? "" });
  const catchUp = h(
    "select",
    { name: "catch_up" },
    h("option", { value: "skip" }, "Skip them"),
    h("option", { value: "once", selected: schedule?.catch_up === "once" }, "Run the latest once"),
  );

  const form = h(
    "form",
    { class: "sc-form", "aria-label": schedule ? `Edit “${schedule.name}”` : "New schedule" },
    h("div", { class: "form-grid" }, field("Name", name, "For you: say what it is for.")),
    where,
    field("Prompt", prompt, "Posted as your message at each run."),
    timing,
    h(
      "div",
      { class: "form-grid" },
      field("Timezone", zone, "IANA name; times above are on its clocks."),
      field("Until", until, "Optional: no run after this time."),
      field("Max runs", maxRuns, "Optional: stop after this many runs."),
      field("Missed runs", catchUp, "Those missed while the server was down."),
    ),
    zoneList,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, submitLabel),
      cancel ? h("button", { type: "button", onclick: cancel }, "Cancel") : null,
    ),
  );

  const checked = (group) => form.querySelector(`input[name=${group}]:checked`)?.value;
  const pickedDays = () => dayBoxes.filter((box) => box.checked).map((box) => box.value);

  /** Show the fields of the choices made; the builder writes its rule where it can be read. */
  function update() {
    const toAgent = checked("target_kind") === "agent";
    conversationField.hidden = toAgent;
    agentFields.hidden = !toAgent;
    const once = checked("when_kind") === "once";
    onceField.hidden = !once;
    timing.querySelector(".sc-repeat").hidden = once;
    const mode = repeat.value;
    const built = mode === "daily" || mode === "weekly";
    timeField.hidden = !built;
    days.hidden = mode !== "weekly";
    rruleField.hidden = mode === "cron";
    cronField.hidden = mode !== "cron";
    if (built) rrule.value = buildRrule(mode, time.value, pickedDays());
  }
  form.addEventListener("change", (event) => {
    if (event.target !== rrule) update();
  });
  time.addEventListener("input", update);
  // Typing a rule by hand leaves the builder: the rule is what is saved.
  rrule.addEventListener("input", () => {
    if (repeat.value === "daily" || repeat.value === "weekly") {
      repeat.value = "rrule";
      update();
    }
  });
  update();

  /** The timing and target fields as the API names them. */
  function timingBody() {
    if (checked("when_kind") === "once") return { kind: "at", rule: at.value };
    if (repeat.value === "weekly" && !pickedDays().length) throw invalid("byday", "Tick at least one day.");
    if (repeat.value === "cron") return { kind: "cron", rule: cron.value.trim() };
    return { kind: "rrule", rule: rrule.value.trim() };
  }

  function targetBody() {
    // Said here, next to the field in view: the API would name `conversation_id` for both.
    if (checked("target_kind") === "agent") {
      if (!agent.value) throw invalid("agent_id", "Choose an agent (the Agents page makes one).");
      return { agent_id: agent.value, new_conversation: eachRun.value === "true" };
    }
    if (!conversation.value) throw invalid("conversation_id", "Choose a conversation.");
    return { conversation_id: conversation.value };
  }

  function untilBody() {
    return until.value ? zonedToUtc(until.value, zone.value.trim()) : null;
  }

  bindForm(form, async () => {
    const { kind, rule } = timingBody();
    const target = targetBody();
    const limit = maxRuns.value === "" ? null : Number(maxRuns.value);
    if (!original) {
      const body = {
        name: name.value.trim(),
        ...target,
        prompt: prompt.value,
        [kind]: rule,
        timezone: zone.value.trim(),
        catch_up: catchUp.value,
      };
      const end = untilBody();
      if (end) body.until = end;
      if (limit !== null) body.max_runs = limit;
      await submit(body);
      return;
    }
    // Only what changed: a new rule or timezone plans the next run from now.
    const body = {};
    if (name.value.trim() !== original.name) body.name = name.value.trim();
    if (prompt.value !== original.prompt) body.prompt = prompt.value;
    if (zone.value.trim() !== original.timezone) body.timezone = zone.value.trim();
    if (catchUp.value !== original.catch_up) body.catch_up = catchUp.value;
    const sameTarget = target.conversation_id
      ? target.conversation_id === original.conversation_id
      : !original.conversation_id &&
        target.agent_id === original.agent_id &&
        target.new_conversation === original.new_conversation;
    if (!sameTarget) Object.assign(body, target);
    const unchangedAt = kind === "at" && original.kind === "at" && rule === original.at.slice(0, 16);
    if (!unchangedAt && (kind !== original.kind || rule !== original[kind])) body[kind] = rule;
    const end = untilBody();
    const sameEnd = end && original.until ? new Date(end).getTime() === new Date(original.until).getTime() : end === original.until;
    if (!sameEnd) body.until = end;
    if (limit !== original.max_runs) body.max_runs = limit;
    await submit(body);
  });
  return form;
}
