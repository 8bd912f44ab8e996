// The tab's one event stream: GET /api/events with the access cookie (EventSource cannot send
// headers). The browser resumes with Last-Event-ID by itself; we only watch its state, renew
// the token when the server refuses us, and report "reconnecting" while it is down.
import { refresh } from "./api.js";

const TYPES = [
  "message.created",
  "message.delta",
  "message.completed",
  "message.failed",
  "message.tool_call",
  "message.tool_result",
  "conversation.created",
  "conversation.updated",
  "conversation.deleted",
  "generation.started",
  "generation.aborted",
  "reset",
];

/** Open the stream; `onEvent(event)` gets each parsed event, `onState(state)` "live"|"reconnecting". */
export function openStream(onEvent, onState) {
  let source = null;
  let lastId = null;
  let closed = false;
  let retryTimer = 0;
  let failures = 0;

  function connect() {
    // A new EventSource starts without Last-Event-ID; the browser only sends it on its own
    // reconnects. After we rebuild the stream, the missed events come from a reset instead.
    source = new EventSource("/api/events");
    source.onopen = () => {
      failures = 0;
      onState("live");
    };
    source.onerror = () => {
      onState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (an expired access cookie, say): renew and reopen.
        source = null;
        failures += 1;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(async () => {
          if (closed) return;
          try {
            await refresh();
          } catch {
            // Still down, or signed out: a signed-out page closes the stream.
          }
          if (!closed) {
            connect();
            if (lastId !== null) onEvent({ type: "reset", reason: "reconnected" });
          }
        }, Math.min(10000, 500 * 2 ** failures));
      }
    };
    for (const type of TYPES) {
      source.addEventListener(type, (frame) => {
        if (frame.lastEventId) lastId = frame.lastEventId;
        let event;
        try {
          event = JSON.parse(frame.data);
        } catch {
          return;
        }
        onEvent(event);
      });
    }
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      if (source) source.close();
    },
  };
}
