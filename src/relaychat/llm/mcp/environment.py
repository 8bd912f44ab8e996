"""The environment of a stdio MCP server: what it needs of relaychat's, and nothing else.

A child gets a fixed set of harmless variables it cannot work without — where programs and
its home are, the locale, and the certificate and proxy settings that any network access
behind a corporate proxy or a private CA needs — plus the names its server lists in
`inherit_env`, plus its `env`. relaychat's own settings (database URL, JWT secret, provider
keys) stay out unless passed on purpose.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

# Lower-case proxy variables are what curl and many libraries read first, so both cases pass.
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

INHERITED_BY_DEFAULT: tuple[str, ...] = (
    # Finding programs, a home for caches (uvx, npx), a user name.
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TMPDIR",
    # Text encoding and time zone.
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    # Trusted certificates, as OpenSSL, requests, curl and Node read them.
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    *_PROXIES,
    *(name.lower() for name in _PROXIES),
)


def child_environment(
    environ: Mapping[str, str], inherit: Iterable[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The variables of `environ` named by default or by `inherit` (`NAME` or `PREFIX*`),
    then `extra` over them."""
    patterns = [*INHERITED_BY_DEFAULT, *inherit]
    env = {
        name: value
        for name, value in environ.items()
        # A value starting with "()" is an exported shell function: never pass code along.
        if not value.startswith("()")
        and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    env.update(extra)
    return env
