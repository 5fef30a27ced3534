"""Scrub secrets out of text before it leaves the machine.

:func:`redact` replaces each secret it recognises by ``[REDACTED:<kind>]``:

==================  ========================================================
kind                what
==================  ========================================================
anthropic_key       ``sk-ant-...`` keys
api_key             other ``sk-`` keys (20+ characters), and the value of
                    ``api_key=`` / ``apikey=`` / ``x-api-key:``
bearer_token        the token after ``Bearer`` (the word stays)
basic_auth          the credentials after ``Authorization: Basic``
aws_access_key_id   ``AKIA...`` / ``ASIA...`` access key ids
aws_secret_key      the value of ``aws_secret_access_key=``
password            the value of ``password=``, ``passwd=``, ``pwd=``,
                    ``passphrase=``
token               the value of ``token=``, ``access_token=``
secret              the value of ``secret=``, ``secret_key=``
private_key         PEM ``-----BEGIN ... PRIVATE KEY-----`` blocks (also cut
                    ones: a block whose start or end was cut off)
jwt                 JSON Web Tokens (three base64url segments, ``eyJ...``)
credentials         ``user:pass`` in ``scheme://user:pass@host``
github_token        ``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``,
                    ``github_pat_`` tokens
slack_token         ``xoxa-``, ``xoxb-``, ``xoxe-``, ``xoxo-``, ``xoxp-``,
                    ``xoxr-`` tokens
==================  ========================================================

Key/value secrets are found case-insensitively for any name that ends in one
of the words above (``DB_PASSWORD=``, ``client_secret:``), followed by ``=``
or ``:``, in the bare (``token=abc``), quoted (``password="a b"``), JSON
(``"password": "..."``) and escaped-JSON (``\\"password\\": \\"...\\"``)
forms. A bare value ends at whitespace, a quote, ``&``, ``,`` or ``;``.

Two properties are tested: every pattern runs in linear time, so a megabyte
of near-misses cannot stall the daemon (no nested quantifiers; every
pattern that can scan far may only start at a token boundary), and the
function is idempotent: ``redact(redact(x)) == redact(x)``, because no
pattern matches a ``[REDACTED:...]`` marker.
"""

from __future__ import annotations

import re

from collections.abc import Callable


__all__ = ["MARKER_PREFIX", "redact"]

MARKER_PREFIX = "[REDACTED:"

_NOT_MARKER = r"(?!\[REDACTED:)"
_B64URL = r"A-Za-z0-9_\-"  # base64url: keys, JWTs

# Key/value names, longest first where one is a prefix of another. Each
# name maps to its kind; matching is case-insensitive.
_NAMES: tuple[tuple[str, str], ...] = (
    (r"secret[_-]?access[_-]?key", "aws_secret_key"),
    (r"secret(?:[_-]?key)?", "secret"),
    (r"passphrase", "password"),
    (r"password", "password"),
    (r"passwd", "password"),
    (r"pwd", "password"),
    (r"token", "token"),
    (r"api[_-]?key", "api_key"),
)
_NAME_KINDS = tuple(
    (re.compile(name, re.IGNORECASE), kind) for name, kind in _NAMES
)

_KEY_VALUE = (
    r"(?P<kv_name>(?i:" + "|".join(name for name, _ in _NAMES) + r"))"
    # closing quote of a quoted name (maybe escaped), then = or : (but
    # not the :// of a URL scheme: the url pattern owns those)
    r"(?P<kv_sep>\\?[\"']?[ \t]*(?:=|:(?!//))[ \t]*)"
    r"(?P<kv_value>"
    # escaped JSON inside JSON: \"value\"
    rf"\\\"{_NOT_MARKER}(?:[^\"\\\n]|\\[^\"\n])*\\\""
    rf"|\"{_NOT_MARKER}(?:[^\"\\\n]|\\.)*\""
    rf"|'{_NOT_MARKER}(?:[^'\\\n]|\\.)*'"
    # bare, optionally after an auth scheme word (token=Bearer abc)
    # (never from a backslash: that is an escaped quote's)
    rf"|(?:(?i:bearer|basic)[ \t]+)?{_NOT_MARKER}[^\s\"'&,;<>`\\]"
    r"[^\s\"'&,;<>`]*"
    r")"
)

# Tried in this order at each position. A URL's scheme may hold token
# characters, so "url" comes last and its scheme is scanned again (a token
# starting there must not survive the first pass and surface in a second).
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("anthropic_key", rf"(?<![{_B64URL}])sk-ant-[{_B64URL}]+"),
    ("api_key", rf"(?<![{_B64URL}])sk-[{_B64URL}]{{20,}}"),
    (
        "github_token",
        (
            r"(?<![A-Za-z0-9_])"
            r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
        ),
    ),
    ("slack_token", r"(?<![A-Za-z0-9_\-])xox[abeopr]-[A-Za-z0-9\-]{8,}"),
    (
        "aws_access_key_id",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
    ),
    (
        "jwt",
        (
            rf"(?<![{_B64URL}])eyJ[{_B64URL}]{{4,}}"
            rf"\.[{_B64URL}]{{4,}}\.[{_B64URL}]*"
        ),
    ),
    (
        "basic_auth",
        (
            r"(?P<basic_head>(?i:authorization)\\?[\"']?[ \t]*[:=][ \t]*"
            r"\\?[\"']?(?i:basic)[ \t]+)"
            rf"{_NOT_MARKER}[A-Za-z0-9+/]+=*"
        ),
    ),
    (
        "bearer_token",
        (
            r"(?P<bearer_head>(?<![A-Za-z0-9_])(?i:bearer)[ \t]+)"
            rf"{_NOT_MARKER}(?P<bearer_value>[A-Za-z0-9\-._~+/]+=*)"
        ),
    ),
    ("kv", _KEY_VALUE),
    (
        "url",
        (
            # scheme://user:pass@  (the scheme must start a token)
            r"(?<![A-Za-z0-9+.\-])"
            r"(?P<url_scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
            # no quotes or brackets: they are not valid there, and keeping
            # them out keeps a marker from ever looking like a password
            r"(?P<url_creds>[^\s/@:\"'<>\[\]]*:[^\s/\"'<>\[\]]*)@"
        ),
    ),
)

_GROUPED = "|".join(f"(?P<{name}>{regex})" for name, regex in _PATTERNS)
_SECRETS = re.compile(_GROUPED)

# A bearer "token" made only of lower-case letters is a word in prose
# ("Bearer authentication"), not a credential.
_PLAIN_WORD = re.compile(r"[a-z]+")

# PEM: markers, and the base64 body lines of a block cut by a line limit.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_TAIL = re.compile(
    # whole lines only (real or escaped newlines): headers, base64, blank
    r"(?:(?:\r?\n|\\[rn])[ \t]*"
    r"(?:(?:Proc-Type|DEK-Info):[^\r\n\\]*|[A-Za-z0-9+/=]*)"
    r"(?=\r?\n|\\[rn]|\Z))*"
)
_BASE64_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)


def _marker(kind: str) -> str:
    return f"{MARKER_PREFIX}{kind}]"


def _key_value(match: re.Match[str]) -> str:
    name = match.group("kv_name")
    kind = next(k for pattern, k in _NAME_KINDS if pattern.fullmatch(name))
    value = match.group("kv_value")
    if value.startswith('\\"'):
        replaced = f'\\"{_marker(kind)}\\"'
    elif value[0] in "\"'":
        if value in {'""', "''"}:  # an empty string holds no secret
            return match.group(0)
        replaced = f"{value[0]}{_marker(kind)}{value[0]}"
    else:
        replaced = _marker(kind)
    return f"{name}{match.group('kv_sep')}{replaced}"


def _bearer(match: re.Match[str]) -> str:
    value = match.group("bearer_value")
    if _PLAIN_WORD.fullmatch(value):
        return match.group(0)
    return f"{match.group('bearer_head')}{_marker('bearer_token')}"


_HANDLERS: dict[str, Callable[[re.Match[str]], str]] = {
    "url": lambda m: (
        f"{_SECRETS.sub(_replace, m.group('url_scheme'))}"
        f"{_marker('credentials')}@"
    ),
    "basic_auth": lambda m: f"{m.group('basic_head')}{_marker('basic_auth')}",
    "bearer_token": _bearer,
    "kv": _key_value,
}


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    assert kind is not None  # noqa: S101 - every alternative is a group
    handler = _HANDLERS.get(kind)
    return _marker(kind) if handler is None else handler(match)


def _line_is_base64(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and set(stripped) <= _BASE64_CHARS


def _redact_pem(text: str) -> str:
    """Replace PEM private key blocks, whole or cut, in one forward scan."""
    if "PRIVATE KEY-----" not in text:
        return text
    out: list[str] = []
    pos = 0  # everything before pos is settled
    # Each marker is searched for again only once pos has passed it, so
    # the scan stays linear however the markers interleave.
    begin = _PEM_BEGIN.search(text)
    end = _PEM_END.search(text)
    while True:
        if begin is not None and begin.start() < pos:
            begin = _PEM_BEGIN.search(text, pos)
        if end is not None and end.start() < pos:
            end = _PEM_END.search(text, pos)
        if end is not None and (begin is None or end.start() < begin.start()):
            # An END with no BEGIN: the block's head was cut off. Take the
            # base64 lines just above it too (never before pos).
            start = end.start()
            while start > pos and text[start - 1] == "\n":
                line_start = max(text.rfind("\n", pos, start - 1) + 1, pos)
                if not _line_is_base64(text[line_start : start - 1]):
                    break
                start = line_start
            out.append(text[pos:start])
            out.append(_marker("private_key"))
            pos = end.end()
            continue
        if begin is None:
            break
        out.append(text[pos : begin.start()])
        out.append(_marker("private_key"))
        if end is not None:
            pos = end.end()
        else:
            # No END anywhere after: the block's tail was cut off. Take
            # the base64 body that follows.
            tail = _PEM_TAIL.match(text, begin.end())
            pos = begin.end() if tail is None else tail.end()
    out.append(text[pos:])
    return "".join(out)


def redact(text: str) -> str:
    """Return *text* with every recognised secret replaced by a marker."""
    return _SECRETS.sub(_replace, _redact_pem(text))
