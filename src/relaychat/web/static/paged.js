// Lists read page by page, under a "Load more" button. Two kinds: `paged`, a filtered list
// that starts again from its first page when its filter changes (users, the audit trails);
// and `keysetRows`, a history that stays live while shown: rows with an `id`, newest first,
// read with a keyset cursor (`before`), "Load more" adding the next page without repeating
// a row already shown, and a re-read bringing new rows on top and updating those shown while
// keeping the older pages loaded (a webhook's deliveries, a schedule's runs).
import { h } from "./ui.js";

/**
 * A list that loads page after page: `load(cursor)` resolves `{ items, next }`; `render`
 * draws the items of every page loaded so far. Returns `{ node, reload }`.
 */
export function paged(load, render) {
  const node = h("div", { class: "paged" });
  let items = [];
  let next = null;
  const more = h("button", { type: "button", class: "more" }, "Load more");
  const body = h("div");
  node.append(body, more);
  async function fetchPage(cursor) {
    more.disabled = true;
    try {
      const page = await load(cursor);
      items = cursor ? items.concat(page.items) : page.items;
      next = page.next || null;
      body.replaceChildren(render(items));
    } finally {
      more.disabled = false;
      more.hidden = !next;
    }
  }
  more.addEventListener("click", () => fetchPage(next));
  return { node, reload: () => fetchPage(null) };
}

const MOST = 100; // the most rows a re-read asks for in one request

/**
 * `fetchPage(before, limit)` resolves `{ list, next }` (the rows, and the cursor of the page
 * after them or null); `render()` draws `rows.items`; `fail(error)` says why "Load more"
 * failed. Returns `rows`: its `items` the caller may replace (a row read again, one just
 * made), `more` the "Load more" button to place under the list.
 */
export function keysetRows({ fetchPage, render, fail, size = 20 }) {
  let next = null;
  const rows = {
    items: [],
    more: h("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore() }, "Load more"),
    /** Draw the rows, and "Load more" while there is a further page. */
    show() {
      render();
      rows.more.hidden = !next;
    },
    /** Read again the first rows, as many as are shown (up to 100); `merge` takes them in. */
    async fetchFresh() {
      const limit = Math.min(MOST, Math.max(size, rows.items.length));
      return { limit, page: await fetchPage(null, limit) };
    },
    /** New rows on top, the states of those shown updated; nothing is drawn. */
    merge({ limit, page }) {
      const fresh = new Set(page.list.map((row) => row.id));
      // Beyond what one request can bring back, keep the older pages as they were loaded.
      const older = page.list.length === limit ? rows.items.slice(limit).filter((row) => !fresh.has(row.id)) : [];
      rows.items = page.list.concat(older);
      next = older.length ? next : page.next;
    },
    /** Read again everything shown and draw it. */
    async reread() {
      rows.merge(await rows.fetchFresh());
      rows.show();
    },
  };

  async function loadMore() {
    rows.more.disabled = true;
    try {
      const page = await fetchPage(next, size);
      const known = new Set(rows.items.map((row) => row.id));
      rows.items = rows.items.concat(page.list.filter((row) => !known.has(row.id)));
      next = page.next;
      rows.show();
    } catch (error) {
      fail(error);
    } finally {
      rows.more.disabled = false;
    }
  }

  return rows;
}
