// Times of the Schedules pages: a schedule's rule in words, the daily/weekly builder's RRULE
// (and reading one back into the builder), and wall-clock times in a schedule's timezone,
// which need not be the browser's.
import { h } from "./ui.js";

export const WEEKDAYS = [
  ["MO", "Monday"],
  ["TU", "Tuesday"],
  ["WE", "Wednesday"],
  ["TH", "Thursday"],
  ["FR", "Friday"],
  ["SA", "Saturday"],
  ["SU", "Sunday"],
];
const DAY_NAMES = Object.fromEntries(WEEKDAYS);

/** The browser's timezone: what a new schedule starts with. */
export function browserTimezone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** Every IANA zone the browser knows, for the timezone field's suggestions. */
export function knownTimezones() {
  return typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
}

const pad = (n) => String(n).padStart(2, "0");

/** `HH:MM` and the weekdays as the builder makes them into an RRULE. */
export function buildRrule(repeat, time, days) {
  const [hour, minute] = (time || "00:00").split(":").map(Number);
  const at = `BYHOUR=${hour};BYMINUTE=${minute}`;
  if (repeat === "weekly") return `FREQ=WEEKLY;BYDAY=${days.join(",")};${at}`;
  return `FREQ=DAILY;${at}`;
}

/**
 * An RRULE the builder could have made, read back: `{ repeat, time, days }`, or null for
 * anything else (it stays a raw rule).
 */
export function parseSimpleRrule(rule) {
  const parts = {};
  for (const piece of String(rule || "").toUpperCase().split(";")) {
    const [key, value] = piece.split("=");
    if (!key || value === undefined || key in parts) return null;
    parts[key] = value;
  }
  const keys = Object.keys(parts);
  if (!keys.every((key) => ["FREQ", "BYDAY", "BYHOUR", "BYMINUTE"].includes(key))) return null;
  if (!/^\d{1,2}$/.test(parts.BYHOUR || "") || !/^\d{1,2}$/.test(parts.BYMINUTE ?? "0")) return null;
  const hour = Number(parts.BYHOUR);
  const minute = Number(parts.BYMINUTE ?? "0");
  if (hour > 23 || minute > 59) return null;
  const time = `${pad(hour)}:${pad(minute)}`;
  if (parts.FREQ === "DAILY" && !parts.BYDAY) return { repeat: "daily", time, days: [] };
  if (parts.FREQ === "WEEKLY" && parts.BYDAY) {
    const days = parts.BYDAY.split(",");
    if (!days.every((day) => day in DAY_NAMES)) return null;
    return { repeat: "weekly", time, days };
  }
  return null;
}

/** A five-field cron line of one minute and one hour (`30 7 * * 1-5`), in words; else null. */
function cronWords(rule) {
  const fields = String(rule).trim().split(/\s+/);
  if (fields.length !== 5 || !/^\d{1,2}$/.test(fields[0]) || !/^\d{1,2}$/.test(fields[1])) return null;
  const [minute, hour, dom, month, dow] = fields;
  const time = `${pad(hour)}:${pad(minute)}`;
  if (dom !== "*" || month !== "*") return null;
  if (dow === "*") return `Every day at ${time}`;
  if (dow === "1-5") return `Weekdays at ${time}`;
  return null;
}

/** How a schedule's rule reads: words when it is a simple one, else the rule as given. */
export function timingWords(schedule) {
  if (schedule.kind === "at") return h("span", {}, "Once, at ", localTime(schedule.at));
  if (schedule.kind === "rrule") {
    const simple = parseSimpleRrule(schedule.rrule);
    if (simple?.repeat === "daily") return h("span", { title: schedule.rrule }, `Every day at ${simple.time}`);
    if (simple?.repeat === "weekly") {
      const names = simple.days.map((day) => DAY_NAMES[day]).join(", ");
      return h("span", { title: schedule.rrule }, `Every ${names} at ${simple.time}`);
    }
    return h("span", {}, "RRULE ", h("code", {}, schedule.rrule));
  }
  const words = cronWords(schedule.cron);
  if (words) return h("span", { title: `cron ${schedule.cron}` }, words);
  return h("span", {}, "cron ", h("code", {}, schedule.cron));
}

const LOCAL = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZone: "UTC",
});

/**
 * A wall-clock time as the server gives it (`2026-12-05T08:00:00+01:00`, or without an
 * offset), read as written: shown in the schedule's timezone, not the browser's.
 */
export function localTime(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(String(text || ""));
  if (!match) return h("span", {}, String(text || ""));
  const [, y, mo, d, hh, mi] = match.map(Number);
  const shown = LOCAL.format(new Date(Date.UTC(y, mo - 1, d, hh, mi)));
  const offset = /([+-]\d{2}:\d{2}|Z)$/.exec(text)?.[1];
  return h("time", { datetime: text }, offset ? `${shown} (${offset === "Z" ? "UTC" : offset})` : shown);
}

/** How far `timezone` is ahead of UTC at `date`, in ms (throws on an unknown zone). */
function offsetAt(date, timezone) {
  const parts = {};
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: timezone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  });
  for (const { type, value } of format.formatToParts(date)) parts[type] = Number(value);
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return wall - Math.floor(date.getTime() / 1000) * 1000;
}

/** `YYYY-MM-DDTHH:MM` on the clocks of `timezone`, as an ISO instant (UTC). */
export function zonedToUtc(local, timezone) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(local);
  if (!match) return null;
  const [, y, mo, d, hh, mi] = match.map(Number);
  const wall = Date.UTC(y, mo - 1, d, hh, mi);
  try {
    // The offset at the guess, then at the corrected instant: right across a DST change.
    const first = wall - offsetAt(new Date(wall), timezone);
    return new Date(wall - offsetAt(new Date(first), timezone)).toISOString();
  } catch {
    return new Date(local).toISOString(); // an unknown zone: the server says so, by field
  }
}

/** An ISO instant as `YYYY-MM-DDTHH:MM` on the clocks of `timezone` (a datetime-local value). */
export function utcToZoned(iso, timezone) {
  if (!iso) return "";
  const date = new Date(iso);
  let shifted;
  try {
    shifted = new Date(date.getTime() + offsetAt(date, timezone));
  } catch {
    shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  }
  return shifted.toISOString().slice(0, 16);
}
