"""redact(): secrets out, ordinary text untouched, linear, idempotent."""

from __future__ import annotations

import json
import time

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

import selfhealing.redact

from selfhealing.redact import redact


ANTHROPIC = (
    "sk-ant-api03-Qm9vYmFyYmF6cXV4UXVpY2tCcm93bkZveA_JumpsOver-LazyDog0a1b2"
)
OPENAI = "sk-proj-4fJ9kLm2Pq7RsT1uVw3XyZ5aBcDeFgHi"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - AWS docs' example
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF"
SLACK = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
OPAQUE = "d41d8cd98f00b204e9800998ecf8427e-opaque.Tok3n"
PEM_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo\n"
)
PEM = (
    f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----"
)

# Ordinary text that must survive every line it appears in.
REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"
UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
GIT_SHA = "921309c1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7"
PATH = "/srv/app/releases/2026-01-01/app/worker.py"

# (log line, secrets that must be gone, kinds that must appear)
CORPUS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        (
            '10.0.0.7 - - [01/Jan/2026:00:00:01 +0000] "GET /api/v1/items'
            f'?access_token={OPAQUE}&page=2 HTTP/1.1" 200 512 "-" "curl/8.5.0"'
            f" rid={REQUEST_ID}"
        ),
        (OPAQUE,),
        ("token",),
    ),
    (
        (
            '10.0.0.7 - admin [01/Jan/2026:00:00:02 +0000] "POST /login?user=bob'
            '&password=hunter2-Hunter2 HTTP/2.0" 302 0 "https://example.com/"'
        ),
        ("hunter2-Hunter2",),
        ("password",),
    ),
    (
        (
            f'upstream: "http://10.0.0.9:8080{PATH}", host: "api.internal",'
            f' authorization: "Bearer {OPAQUE}"'
        ),
        (OPAQUE,),
        ("bearer_token",),
    ),
    (
        (
            '2026-01-01 00:00:03,120 ERROR anthropic request failed: {"type":'
            f'"error","error":{{"type":"authentication_error","message":'
            f'"invalid x-api-key"}},"request_id":"{REQUEST_ID}"}} key={ANTHROPIC}'
        ),
        (ANTHROPIC,),
        ("anthropic_key",),
    ),
    (
        f"openai fallback configured with {OPENAI} in {PATH}",
        (OPENAI,),
        ("api_key",),
    ),
    (
        f"AWS_ACCESS_KEY_ID={AWS_ID} AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        (AWS_ID, AWS_SECRET),
        ("aws_access_key_id", "aws_secret_key"),
    ),
    (
        (
            f"[default]\naws_access_key_id = {AWS_ID}\n"
            f"aws_secret_access_key = {AWS_SECRET}\n"
        ),
        (AWS_ID, AWS_SECRET),
        ("aws_access_key_id", "aws_secret_key"),
    ),
    (
        json.dumps(
            {
                "ts": "2026-01-01T00:00:04.000Z",
                "level": "info",
                "msg": "db connect",
                "request_id": REQUEST_ID,
                "trace": UUID,
                "password": "s3cr3t pass phrase",
                "apiKey": "abcdef0123456789",
                "session": JWT,
            }
        ),
        ("s3cr3t pass phrase", "abcdef0123456789", JWT),
        ("password", "api_key", "jwt"),
    ),
    (
        json.dumps(
            {"msg": json.dumps({"Token": "inner-token-value", "id": UUID})}
        ),
        ("inner-token-value",),
        ("token",),
    ),
    (
        (
            "Traceback (most recent call last):\n"
            f'  File "{PATH}", line 42, in connect\n'
            "    conn = psycopg.connect(DATABASE_URL)\n"
            "psycopg.OperationalError: connection failed: "
            "postgresql://app:Pa55w0rd!@db.internal:5432/app\n"
            "Environment:\n"
            f"  PATH=/usr/local/bin:/usr/bin\n"
            f"  ANTHROPIC_API_KEY={ANTHROPIC}\n"
            f"  GITHUB_TOKEN={GITHUB}\n"
            f"  SLACK_BOT_TOKEN={SLACK}\n"
            "  DB_PASSWORD='quoted secret'\n"
            f"  GIT_COMMIT={GIT_SHA}\n"
        ),
        ("Pa55w0rd!", ANTHROPIC, GITHUB, SLACK, "quoted secret"),
        ("credentials", "token", "password"),
    ),
    (
        (
            "environ({'HOME': '/home/app', 'SECRET_KEY': 'django-insecure-x9'"
            f", 'GH_PAT': '{GITHUB_PAT}', 'HOSTNAME': 'web-1'}})"
        ),
        ("django-insecure-x9", GITHUB_PAT),
        ("secret", "github_token"),
    ),
    (
        f"loaded key from vault:\n{PEM}\nstarting worker {UUID}",
        (PEM_BODY.splitlines()[1], "BEGIN RSA PRIVATE KEY"),
        ("private_key",),
    ),
    (
        json.dumps({"tls": {"key": PEM + "\n", "cert_sha": GIT_SHA}}),
        (PEM_BODY.splitlines()[0][:40], "PRIVATE KEY"),
        ("private_key",),
    ),
    (
        (
            "curl -H 'Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l' "
            "https://registry.internal/v2/"
        ),
        ("YWxhZGRpbjpvcGVuc2VzYW1l",),
        ("basic_auth",),
    ),
    (
        (
            f"redis://:{OPAQUE}@cache.internal:6379/0 and "
            f"amqp://guest:guest@mq:5672/ ({REQUEST_ID})"
        ),
        (OPAQUE, "guest:guest"),
        ("credentials",),
    ),
    (
        f"webhook auth failed: {JWT} for {UUID}",
        (JWT,),
        ("jwt",),
    ),
    (
        "x-api-key: abcdEFGH1234ijkl5678 user-agent: Anthropic/Python 2.14.0",
        ("abcdEFGH1234ijkl5678",),
        ("api_key",),
    ),
    (
        "client_secret=AbC123dEf456; passwd: letmein; pwd=CorrectHorse",
        ("AbC123dEf456", "letmein", "CorrectHorse"),
        ("secret", "password"),
    ),
]

ORDINARY = [
    f"GET {PATH}?page=2&sort=desc HTTP/1.1 200 {REQUEST_ID}",
    f"commit {GIT_SHA} (HEAD -> main, origin/main)",
    f"trace_id={UUID} span=0af7651916cd43dd elapsed=12.5ms",
    (
        "2026-01-01T00:00:00.000Z INFO  [SelfHealing] dormant mode entered "
        'reason="10 consecutive failures"'
    ),
    (
        'File "/usr/lib/python3.11/asyncio/base_events.py", line 654, in '
        "run_until_complete"
    ),
    "KeyError: 'token'",
    (
        '{"usage": {"input_tokens": 1520, "output_tokens": 64}, '
        '"max_tokens": 512, "stop_reason": "tool_use"}'
    ),
    "msg_01XFDUDYJgAACzvnptvVoYEL toolu_01A09q90qw90lq917835lq9",
    "Bearer authentication is described in RFC 6750.",
    "password_hint=blue token_count=3 secret_santa: list",
    "masked key id sk-ant-...a1b2 and sk-ant-...a1b2#2",
    "https://example.com:8443/path/to/page?x=1#frag user@example.com",
    "task-abcdefghijklmnopqrstuvwxyz0123 disk-usage-report-2026-01-01",
    (
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n"
        "-----END CERTIFICATE-----"
    ),
    (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----"
    ),
    "AKIA is the prefix of an access key id; AKIASHORT is not one.",
    "",
]


class TestExports:
    def test_all_is_sorted_and_complete(self) -> None:
        """The module exports a sorted __all__ of names that exist."""
        names = selfhealing.redact.__all__
        assert sorted(names) == names
        for name in names:
            assert hasattr(selfhealing.redact, name)


class TestCorpus:
    @pytest.mark.parametrize(
        ("line", "secrets", "kinds"),
        CORPUS,
        ids=[f"line{i}" for i in range(len(CORPUS))],
    )
    def test_secrets_are_gone(
        self, line: str, secrets: tuple[str, ...], kinds: tuple[str, ...]
    ) -> None:
        """Each secret in a realistic log line is replaced by its marker."""
        redacted = redact(line)
        assert [] == [secret for secret in secrets if secret in redacted]
        for kind in kinds:
            assert f"[REDACTED:{kind}]" in redacted

    @pytest.mark.parametrize(
        ("line", "secrets", "kinds"),
        CORPUS,
        ids=[f"line{i}" for i in range(len(CORPUS))],
    )
    def test_ordinary_parts_survive(
        self, line: str, secrets: tuple[str, ...], kinds: tuple[str, ...]
    ) -> None:
        """Request ids, UUIDs, git SHAs and paths in those lines stay."""
        redacted = redact(line)
        for ordinary in (REQUEST_ID, UUID, GIT_SHA, PATH):
            assert line.count(ordinary) == redacted.count(ordinary)

    @pytest.mark.parametrize("line", ORDINARY)
    def test_ordinary_text_is_untouched(self, line: str) -> None:
        """Text without secrets comes back exactly as it went in."""
        assert line == redact(line)

    @pytest.mark.parametrize(
        "line",
        [line for line, _, _ in CORPUS] + ORDINARY,
    )
    def test_idempotent_on_the_corpus(self, line: str) -> None:
        """Redacting twice changes nothing more than redacting once."""
        once = redact(line)
        assert once == redact(once)


class TestExactOutput:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param(
                f"Authorization: Bearer {OPAQUE}",
                "Authorization: Bearer [REDACTED:bearer_token]",
                id="bearer-keeps-the-word",
            ),
            pytest.param(
                f"x-api-key: {ANTHROPIC}",
                "x-api-key: [REDACTED:api_key]",
                id="api-key-header",
            ),
            pytest.param(
                f"using {ANTHROPIC}.",
                "using [REDACTED:anthropic_key].",
                id="anthropic",
            ),
            pytest.param(
                "postgres://user:p@ss@db:5432/app",
                "postgres://[REDACTED:credentials]@db:5432/app",
                id="url-last-at",
            ),
            pytest.param(
                '{"password": "a \\"b\\" c", "user": "bob"}',
                '{"password": "[REDACTED:password]", "user": "bob"}',
                id="json-escaped-quotes",
            ),
            pytest.param(
                "{'passwd': 'x y'}",
                "{'passwd': '[REDACTED:password]'}",
                id="python-repr",
            ),
            pytest.param(
                '{\\"token\\": \\"abc\\", \\"n\\": 1}',
                '{\\"token\\": \\"[REDACTED:token]\\", \\"n\\": 1}',
                id="json-in-json",
            ),
            pytest.param(
                "TOKEN=Bearer abc123 next",
                "TOKEN=[REDACTED:token] next",
                id="scheme-inside-value",
            ),
            pytest.param(
                'password="" user=bob',
                'password="" user=bob',
                id="empty-value-kept",
            ),
            pytest.param(
                f"aws_access_key_id={AWS_ID},region=eu-west-1",
                "aws_access_key_id=[REDACTED:aws_access_key_id],"
                "region=eu-west-1",
                id="aws-id",
            ),
            pytest.param(
                f"{SLACK} {GITHUB}",
                "[REDACTED:slack_token] [REDACTED:github_token]",
                id="slack-github",
            ),
            pytest.param(
                f"before\n{PEM}\nafter",
                "before\n[REDACTED:private_key]\nafter",
                id="pem",
            ),
            pytest.param(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
                "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n"
                f"{PEM_BODY}-----END ENCRYPTED PRIVATE KEY-----\nafter",
                "[REDACTED:private_key]\nafter",
                id="pem-encrypted",
            ),
        ],
    )
    def test_output(self, text: str, expected: str) -> None:
        """Markers replace exactly the secret, keeping the text around it."""
        assert expected == redact(text)


class TestCutPemBlocks:
    def test_block_without_end(self) -> None:
        """A block cut by a line limit loses its base64 body too."""
        text = (
            "key follows\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
            f"{PEM_BODY}2026-01-01 00:00:05 INFO next line"
        )
        expected = (
            "key follows\n[REDACTED:private_key]\n"
            "2026-01-01 00:00:05 INFO next line"
        )
        assert expected == redact(text)

    def test_block_without_begin(self) -> None:
        """A block whose head was cut loses the base64 lines above its end."""
        text = f"tail of a log\n{PEM_BODY}-----END PRIVATE KEY-----\nnext"
        assert "tail of a log\n[REDACTED:private_key]\nnext" == redact(text)

    def test_several_blocks(self) -> None:
        """Every block in a text is replaced, whole or cut."""
        text = (
            f"{PEM}\nmiddle {UUID}\n{PEM}\n-----BEGIN PRIVATE KEY-----\nQUJD"
        )
        expected = (
            "[REDACTED:private_key]\nmiddle "
            f"{UUID}\n[REDACTED:private_key]\n[REDACTED:private_key]"
        )
        assert expected == redact(text)


# Inputs built to make a backtracking regex take quadratic (or worse) time.
MEGABYTE = 1_000_000
NEAR_MISSES = {
    "letters": "a" * MEGABYTE,
    "sk-prefixes": "sk-" * (MEGABYTE // 3),
    "sk-ant-short": "sk-ant-" * (MEGABYTE // 7),
    "jwt-segments": "eyJa." * (MEGABYTE // 5),
    "jwt-one-segment": "eyJ" + "a" * MEGABYTE,
    "url-no-at": "a://b:" + "c" * MEGABYTE,
    "url-schemes": "http://" * (MEGABYTE // 7),
    "url-colons": "http://a" + ":" * MEGABYTE,
    "names-without-values": "password=" * (MEGABYTE // 9),
    "unclosed-quotes": 'password="' * (MEGABYTE // 10),
    "unclosed-escaped": 'token=\\"' * (MEGABYTE // 8),
    "name-then-spaces": "secret" + " " * MEGABYTE,
    "bearer-words": "Bearer " * (MEGABYTE // 7),
    "aws-prefixes": "AKIA" * (MEGABYTE // 4),
    "identifiers": "a_" * (MEGABYTE // 2),
    "pem-begins": "-----BEGIN RSA PRIVATE KEY-----\n" * (MEGABYTE // 32),
    "pem-ends": "-----END RSA PRIVATE KEY-----\n" * (MEGABYTE // 30),
    "pem-base64-then-end": "QUJD\n" * (MEGABYTE // 5)
    + "-----END PRIVATE KEY-----",
    "pem-begin-run": "-----BEGIN " + "PRIVATE KEY" * (MEGABYTE // 11),
}


class TestLinearTime:
    @pytest.mark.parametrize("text", NEAR_MISSES.values(), ids=NEAR_MISSES)
    def test_a_megabyte_of_near_misses_is_fast(self, text: str) -> None:
        """1 MB built to trip backtracking takes well under 5 s (it is linear).

        A quadratic pattern would need hours here; the bound only has to
        catch that, so it is generous enough for a slow CI machine.
        """
        started = time.perf_counter()
        redact(text)
        assert time.perf_counter() - started < 5.0


FRAGMENTS = [
    "token", "password", "pwd", "secret", "api_key", "x-api-key",
    "aws_secret_access_key", "Bearer", "basic", "authorization",
    "=", ":", ": ", " ", '"', "'", '\\"', "\\", "\n", "\\n",
    "sk-ant-", "sk-", "abcdefghijklmnopqrstuvwxyz", "AKIA",
    "ABCDEFGHIJKLMNOP", "eyJ", "abcd", ".", "://", "http", "@", "/",
    "ghp_", "xoxb-", "12345678", "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----", "MIIE", "Proc-Type: 4",
    "[REDACTED:token]", "[", "]", ",", "&", ";", "-", "_",
]  # fmt: skip


class TestIdempotent:
    @settings(max_examples=500)
    @given(st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join))
    def test_fragments(self, text: str) -> None:
        """redact(redact(x)) == redact(x) for text built from near-misses."""
        once = redact(text)
        assert once == redact(once)

    @given(st.text())
    def test_any_text(self, text: str) -> None:
        """redact(redact(x)) == redact(x) for arbitrary text."""
        once = redact(text)
        assert once == redact(once)
