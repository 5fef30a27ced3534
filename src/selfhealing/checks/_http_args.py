"""Validation of HttpCheck's arguments, done once, at construction.

Every refusal is a ConfigError naming the parameter and the value, except
where the value may hold a secret: passwords in URLs and header values
are never echoed.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Mapping

from yarl import URL

from selfhealing.exceptions import ConfigError


__all__ = [
    "compile_regex",
    "describe_codes",
    "header_text",
    "parse_headers",
    "parse_method",
    "parse_status_codes",
    "parse_url",
    "redacted",
]

_DEFAULT_STATUS = range(200, 400)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# "scheme://user:PASSWORD@", for URLs too broken for yarl to redact.
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*:)[^/?#@]*@")


def parse_url(url: object) -> URL:
    if not isinstance(url, str):
        raise ConfigError(f"must be a string, got {url!r}", where="url")
    try:
        parsed = URL(url)
        host = parsed.host
        parsed.port  # noqa: B018 - yarl checks the port only when read
    except ValueError as exc:
        shown = _USERINFO_PASSWORD.sub(
            r"\1***@", f"{url!r} is not a URL: {exc}"
        )
        raise ConfigError(shown, where="url") from exc
    if (
        parsed.scheme not in {"http", "https"}
        or not host
        or any(char.isspace() for char in host)
    ):
        raise ConfigError(
            f"{str(redacted(parsed))!r} needs an http:// or https:// "
            "scheme and a host",
            where="url",
        )
    return parsed


def redacted(url: URL) -> URL:
    """*url* with any password masked, for messages and reprs."""
    if url.password is None:
        return url
    return url.with_password("***")


def parse_method(method: object) -> str:
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise ConfigError(f"{method!r} is not an HTTP method", where="method")
    return method.upper()


def parse_status_codes(codes: Iterable[int] | None) -> range | frozenset[int]:
    if codes is None:
        return _DEFAULT_STATUS
    if isinstance(codes, str | bytes) or not isinstance(codes, Iterable):
        raise ConfigError(
            f"must be a list of status codes, got {codes!r}",
            where="expected_status",
        )
    accepted: set[int] = set()
    for code in codes:
        if (
            isinstance(code, bool)
            or not isinstance(code, int)
            or not 100 <= code <= 599  # noqa: PLR2004 - HTTP's own range
        ):
            raise ConfigError(
                f"{code!r} is not an HTTP status code (100-599)",
                where="expected_status",
            )
        accepted.add(code)
    if not accepted:
        raise ConfigError(
            "needs at least one status code", where="expected_status"
        )
    return frozenset(accepted)


def describe_codes(codes: range | frozenset[int]) -> str:
    """``"200-399"``, ``"200, 204"``: the accepted codes, compactly."""
    spans: list[str] = []
    ordered = sorted(codes)
    first = last = ordered[0]
    for code in [*ordered[1:], None]:
        if code is not None and code == last + 1:
            last = code
            continue
        spans.append(str(first) if first == last else f"{first}-{last}")
        if code is not None:
            first = last = code
    return ", ".join(spans)


def compile_regex(pattern: object) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(
            f"must be a non-empty string, got {pattern!r}",
            where="body_regex",
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"{pattern!r} is not a valid regex: {exc}", where="body_regex"
        ) from exc


def header_text(value: object, where: str) -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ConfigError(
            f"must be a one-line string, got {value!r}", where=where
        )
    return value


def parse_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if not headers:
        return None
    if not isinstance(headers, Mapping):
        raise ConfigError(
            f"must be a mapping of names to values, got {headers!r}",
            where="headers",
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"{name!r} is not a header name", where="headers"
            )
        # The value is not echoed: headers often carry credentials.
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ConfigError(
                f"the value of {name!r} must be a one-line string",
                where="headers",
            )
        checked[name] = value
    return checked
