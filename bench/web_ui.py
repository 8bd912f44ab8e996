"""The browser UI in headless Chromium: first-load transfer, opening a long conversation,
and the page's time per streamed delta.

- First load: the sign-in page of a fresh browser, every request counted with its
  uncompressed body (HTML, JS, CSS, icon). Budget: <= 150 KB in <= 10 requests.
- Open: a conversation of `--messages` messages (half of them model replies in markdown,
  rendered by the server) opened at /c/<id>, until every message is in the page and the
  list has scrolled to its top. Budget: <= 1 s for 1,000; baseline: a 10-message one.
- Deltas: a reply streamed at 20 deltas/s; the page's main-thread time inside each
  `message.delta` handler, in a 2-message conversation (baseline) and in the long one.
  Incremental rendering keeps the ratio near 1 (a whole-list re-render would grow with
  the list); budget: the mean under 5 % of the 50 ms between deltas.

    uv run python -m bench.web_ui [--quick] [--messages 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
from typing import Any

import httpx
from playwright.async_api import Browser, Page, async_playwright

from bench.common import (
    SQLITE,
    add_common_args,
    extra_env,
    fake_directive,
    fake_upstream,
    relaychat_server,
    run,
    table,
    verdict,
    workspace,
)

FIRST_LOAD_KB = 150.0
FIRST_LOAD_REQUESTS = 10
OPEN_SECONDS = 1.0
DELTAS_PER_SECOND = 20
DELTA_SHARE = 0.05
REPLY = (
    "A reply with **markdown**, a [link](https://example.com) and code:\n\n"
    "```python\nfor i in range(3):\n    print(i)\n```\n"
)
EMAIL = "bench-web@example.com"
PASSWORD = "bench password 123"

# Installed before the page's scripts: times every `message.delta` handler of the page.
TIME_DELTAS = """
(() => {
  window.__deltaMs = [];
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    if (type !== "message.delta") return add.call(this, type, listener, options);
    return add.call(this, type, (event) => {
      const start = performance.now();
      listener(event);
      window.__deltaMs.push(performance.now() - start);
    }, options);
  };
})();
"""


async def first_load(browser: Browser, base: str) -> tuple[int, int, list[str]]:
    """Bytes and requests of a first visit (nothing cached, not signed in)."""
    context = await browser.new_context()
    page = await context.new_page()
    sizes: dict[str, int] = {}

    async def finished(request: Any) -> None:
        response = await request.response()
        sizes[request.url] = len(await response.body()) if response else 0

    page.on("requestfinished", finished)
    await page.goto(f"{base}/", wait_until="networkidle")
    await page.get_by_role("button", name="Sign in").wait_for()
    await context.close()
    return sum(sizes.values()), len(sizes), sorted(sizes)


async def signed_in_page(browser: Browser, base: str) -> Page:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(TIME_DELTAS)
    page = await context.new_page()
    await page.goto(f"{base}/")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()
    return page


async def open_seconds(page: Page, base: str, conversation_id: str, count: int) -> float:
    """From navigation start to all `count` messages in the page and the list at its top."""
    await page.goto(f"{base}/c/{conversation_id}")
    elapsed: float = await page.evaluate(
        """async (count) => {
          const list = document.getElementById("message-list");
          while (list.children.length < count) await new Promise(requestAnimationFrame);
          const scroller = document.getElementById("messages");
          scroller.scrollTop = 0;
          await new Promise(requestAnimationFrame);
          const scrolls = scroller.scrollHeight > scroller.clientHeight;
          if (!scrolls && count > 20) throw new Error("the list does not scroll");
          return performance.now() / 1000;
        }""",
        count,
    )
    return elapsed


async def delta_times(page: Page, http: httpx.AsyncClient, conversation_id: str) -> list[float]:
    """Main-thread ms per delta of one reply streamed at DELTAS_PER_SECOND."""
    await page.evaluate("() => { window.__deltaMs = []; }")
    words = " ".join(f"w{i}" for i in range(60))
    text = fake_directive(reply=words, token_delay_ms=1000 // DELTAS_PER_SECOND) + "\nstream"
    posted = await http.post(f"/api/messages/{conversation_id}", json={"text": text})
    posted.raise_for_status()
    reply_id = posted.json()["response_message_id"]
    await (
        page.locator(f'article[data-id="{reply_id}"] .msg-body')
        .get_by_text("w59")
        .wait_for(timeout=60_000)
    )
    times: list[float] = await page.evaluate("() => window.__deltaMs")
    return times


async def build_conversation(http: httpx.AsyncClient, messages: int) -> str:
    """A conversation of `messages` messages: a person's and the model's, in turn."""
    convo = (await http.post("/api/convos", json={"endpoint": "fake", "title": "long"})).json()
    cid: str = convo["conversation_id"]
    for n in range(messages // 2):
        posted = await http.post(f"/api/messages/{cid}", json={"text": f"question {n}"})
        posted.raise_for_status()
        generation = posted.json()["generation_id"]
        for _ in range(6000):  # polled: the bench client has no event stream open
            if (await http.get(f"/api/generations/{generation}")).json()["status"] != "running":
                break
            await asyncio.sleep(0.01)
    return cid


async def main(args: argparse.Namespace) -> None:
    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no Chromium found (install `chromium` or set CHROMIUM_PATH)")
    with workspace("web-ui") as workdir:
        async with (
            fake_upstream(workdir, cpus=None, reply=REPLY) as fake,
            relaychat_server(SQLITE, workdir, fake_port=fake.port, env=extra_env(args)) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http,
            async_playwright() as playwright,
        ):
            base = f"http://127.0.0.1:{server.port}"
            body = {"email": EMAIL, "password": PASSWORD, "name": "Bench"}
            (await http.post("/api/auth/register", json=body)).raise_for_status()
            login = await http.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            started = time.perf_counter()
            small = await build_conversation(http, 10)
            tiny = await build_conversation(http, 2)
            large = await build_conversation(http, args.messages)
            print(
                f"built conversations of 10, 2 and {args.messages} messages "
                f"in {time.perf_counter() - started:.0f} s"
            )

            browser = await playwright.chromium.launch(executable_path=chromium)
            size, requests, urls = await first_load(browser, base)
            page = await signed_in_page(browser, base)
            opens_small = [await open_seconds(page, base, small, 10) for _ in range(args.rounds)]
            opens_large = [
                await open_seconds(page, base, large, args.messages) for _ in range(args.rounds)
            ]
            await page.goto(f"{base}/c/{tiny}")
            await page.locator("#message-list article").nth(1).wait_for()
            deltas_tiny = await delta_times(page, http, tiny)
            await page.goto(f"{base}/c/{large}")
            await page.locator("#message-list article").nth(args.messages - 1).wait_for()
            deltas_large = await delta_times(page, http, large)
            await browser.close()

    kb = size / 1024
    open_large, open_small = statistics.median(opens_large), statistics.median(opens_small)
    mean_tiny, mean_large = statistics.fmean(deltas_tiny), statistics.fmean(deltas_large)
    budget_ms = 1000 / DELTAS_PER_SECOND * DELTA_SHARE
    print("\nfirst load (not signed in): " + ", ".join(u.rsplit("/", 1)[-1] or "/" for u in urls))
    print(
        table(
            ["measure", "value", "baseline", "ratio", "target"],
            [
                [
                    "first load, KB",
                    f"{kb:.1f}",
                    "-",
                    "-",
                    f"<= {FIRST_LOAD_KB:.0f}: {verdict(kb, FIRST_LOAD_KB)}",
                ],
                [
                    "first load, requests",
                    requests,
                    "-",
                    "-",
                    f"<= {FIRST_LOAD_REQUESTS}: {verdict(requests, FIRST_LOAD_REQUESTS)}",
                ],
                [
                    f"open {args.messages} messages, s",
                    f"{open_large:.3f}",
                    f"{open_small:.3f} (10)",
                    f"x{open_large / open_small:.1f}",
                    f"<= {OPEN_SECONDS}: {verdict(open_large, OPEN_SECONDS)}",
                ],
                [
                    f"ms per delta, {args.messages} messages",
                    f"{mean_large:.3f}",
                    f"{mean_tiny:.3f} (2)",
                    f"x{mean_large / mean_tiny:.1f}",
                    f"<= {budget_ms:.1f}: {verdict(mean_large, budget_ms)}",
                ],
                [
                    "  p99 ms per delta",
                    f"{sorted(deltas_large)[int(len(deltas_large) * 0.99) - 1]:.3f}",
                    f"{sorted(deltas_tiny)[int(len(deltas_tiny) * 0.99) - 1]:.3f}",
                    "-",
                    "-",
                ],
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="opens measured, median taken")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.messages = min(parsed.messages, 200)
        parsed.rounds = 1
    run(main, parsed)
