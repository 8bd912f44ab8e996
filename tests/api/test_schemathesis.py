"""Keep it closed: schemathesis, over /openapi.json, against a live server on each backend.

No answer may be a 5xx, and every answer must be what the schema documents for it: its
status, media type, headers and body. Once as a person (bearer token), once as an external
system (API key). A fixed seed and a few examples per operation keep it short and repeatable.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.factories import make_conversation, make_key, make_user

SEED = 20261203
EXAMPLES = 3
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


async def _schemathesis(live_url: str, header: str, workdir: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live_url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "10",
        # The event streams never end; their refusals are checked in test_events.py. Signing
        # out everywhere would end the caller's session and leave every later operation a
        # 401; test_auth.py checks it.
        "--exclude-path-regex",
        r"/events$|^/api/auth/logout-all$",
        "--header",
        header,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,  # its cache and reports stay out of the repository
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("caller", ["user", "api_key"])
async def test_every_answer_conforms_to_the_schema(
    client: httpx.AsyncClient, live_url: str, caller: str, tmp_path: Path
) -> None:
    user = await make_user(client)
    await make_conversation(client, user, conversation_id="c1")
    if caller == "user":
        header = f"Authorization: Bearer {user.access_token}"
    else:
        key = await make_key(client, user, can_create_conversations=True)
        header = f"x-api-key: {key.secret}"
    code, output = await _schemathesis(live_url, header, tmp_path)
    assert code == 0, output[-20_000:]
