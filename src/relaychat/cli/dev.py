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
    # Imported when run: the fake servers (and their web stack) are no cost of `--help`
    # or of the other commands; tests patch `relaychat.devtools.fake_llm.serve_fake_llm`.
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


@dev_app.command("fake-twilio")
def fake_twilio(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9200,
    account_sid: Annotated[
        str | None, typer.Option(help="Accept only this account (with --auth-token).")
    ] = None,
    auth_token: Annotated[str | None, typer.Option(help="The account's token.")] = None,
    callbacks: Annotated[
        bool, typer.Option(help="Report `sent`, then `delivered`, to each StatusCallback.")
    ] = True,
) -> None:
    """Serve a fake Twilio Messages API (see relaychat.devtools.fake_twilio); prints each
    message it is sent."""
    # Imported when run, as for fake-llm: a development server no other command needs.
    from relaychat.devtools.fake_twilio import FakeTwilioState, serve_fake_twilio

    if (account_sid is None) != (auth_token is None):
        raise typer.BadParameter("give both --account-sid and --auth-token, or neither")
    accounts = {account_sid: auth_token} if account_sid and auth_token else None
    state = FakeTwilioState(accounts=accounts, callbacks=callbacks, echo=True)
    typer.echo(f"fake Twilio on http://{host}:{port} (a channel's api_base_url)")
    serve_fake_twilio(host, port, state)


@dev_app.command("twilio-sign")
def twilio_sign(
    fields: Annotated[
        list[str] | None, typer.Argument(help="Form fields as NAME=VALUE, as they will be sent.")
    ] = None,
    url: Annotated[str, typer.Option(help="The URL the form is posted to, query included.")] = "",
    auth_token: Annotated[
        str, typer.Option(envvar="TWILIO_AUTH_TOKEN", help="The channel's auth token.")
    ] = "",
) -> None:
    """Print the X-Twilio-Signature Twilio would send with this form (for trials with curl)."""
    # Imported when run: the twilio SDK is large and only this development aid uses it.
    from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

    if not url or not auth_token:
        raise typer.BadParameter("--url and --auth-token (or TWILIO_AUTH_TOKEN) are required")
    params: dict[str, list[str]] = {}
    for item in fields or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE")
        params.setdefault(name, []).append(value)
    typer.echo(RequestValidator(auth_token).compute_signature(url, _MultiValues(params)))


class _MultiValues(dict[str, list[str]]):
    """Repeated fields, as the validator reads them (`getlist`)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]
