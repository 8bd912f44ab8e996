"""`relaychat dev …`: development servers."""

from __future__ import annotations

from typing import Annotated

import typer

from relaychat.devtools.fake_config import DEFAULT_REPLY, FakeConfig

dev_app = typer.Typer(help="Development tools.")


@dev_app.callback()
def dev() -> None:
    """Development tools: fake upstreams for local trials, tests and benchmarks."""


@dev_app.command("fake-llm")
def fake_llm(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9100,
    ttft_ms: Annotated[int, typer.Option(min=0, help="Delay before the first token.")] = 0,
    token_delay_ms: Annotated[int, typer.Option(min=0, help="Delay between tokens.")] = 0,
    reply: Annotated[str, typer.Option(help="The reply text.")] = DEFAULT_REPLY,
    echo: Annotated[bool, typer.Option(help="Reply with the last user message.")] = False,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this key (default: any non-empty key).")
    ] = None,
) -> None:
    """Serve a fake OpenAI/Anthropic/Gemini upstream (see relaychat.devtools.fake_llm)."""
    from relaychat.devtools.fake_llm import serve_fake_llm

    config = FakeConfig(
        reply=reply,
        echo=echo,
        ttft_ms=ttft_ms,
        token_delay_ms=token_delay_ms,
        api_key=api_key,
    )
    typer.echo(
        f"fake LLM on http://{host}:{port}: OpenAI base_url http://{host}:{port}/v1, "
        f"Anthropic and Google base_url http://{host}:{port}"
    )
    serve_fake_llm(host, port, config)
