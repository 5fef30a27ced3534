"""FakeAnthropic, driven through the real ``anthropic`` SDK (and raw httpx)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from anthropic.types import Message, TextBlock, ToolUseBlock

import selfhealing.testing

from selfhealing.testing import FakeAnthropic, Reply


KEY = "sk-ant-fake-1"
OTHER = "sk-ant-fake-2"
MODEL = "claude-sonnet-4-6"
ACTIONS = ["restart_service", "clear_cache", "escalate_to_human", "no_action"]
TOOL: dict[str, Any] = {
    "name": "choose_remediation",
    "description": "Pick exactly one allow-listed action id.",
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "action_id": {"type": "string", "enum": ACTIONS},
            "diagnosis": {"type": "string"},
            "confidence": {"type": "number"},
        },
        "required": ["action_id", "diagnosis", "confidence"],
    },
}
FORCED: dict[str, Any] = {
    "type": "tool",
    "name": "choose_remediation",
    "disable_parallel_tool_use": True,
}
BODY: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 512,
    "messages": [{"role": "user", "content": "web-1 was OOM-killed"}],
    "tools": [TOOL],
    "tool_choice": FORCED,
}
VERSION = {"anthropic-version": "2023-06-01"}
RATE_LIMIT_MESSAGE = (
    "This request would exceed your account's rate limit."
    " Please try again later."
)

ClientFactory = Callable[..., anthropic.Anthropic]


@pytest.fixture(name="fake")
def _fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic([KEY, OTHER]) as fake:
        yield fake


@pytest.fixture(name="client_for")
def _client_for(fake: FakeAnthropic) -> Iterator[ClientFactory]:
    """Build SDK clients on the fake (no retries by default); closed after."""
    clients: list[anthropic.Anthropic] = []

    def build(key: str = KEY, **options: Any) -> anthropic.Anthropic:
        options = {
            "base_url": fake.url,
            "max_retries": 0,
            "timeout": 5.0,
            **options,
        }
        client = anthropic.Anthropic(api_key=key, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture(name="client")
def _client(client_for: ClientFactory) -> anthropic.Anthropic:
    return client_for()


@pytest.fixture(name="http")
def _http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def advise(client: anthropic.Anthropic, **overrides: Any) -> Any:
    """Make the advisor's call: forced tool, one user message."""
    return client.messages.create(**{**BODY, **overrides})


def post(
    http: httpx.Client,
    fake: FakeAnthropic,
    body: Any = BODY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST to the fake with x-api-key auth and anthropic-version."""
    sent = {"x-api-key": KEY, **VERSION, **(headers or {})}
    if isinstance(body, bytes):
        return http.post(f"{fake.url}/v1/messages", content=body, headers=sent)
    return http.post(f"{fake.url}/v1/messages", json=body, headers=sent)


def error_of(exception: anthropic.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of an SDK exception's parsed JSON body."""
    body = exception.body
    assert isinstance(body, dict)
    error: dict[str, Any] = body["error"]
    return error


def wait_for_requests(fake: FakeAnthropic, count: int) -> None:
    """Block until the fake has recorded *count* requests (5 s at most)."""
    deadline = time.monotonic() + 5
    while len(fake.requests) < count:
        assert time.monotonic() < deadline, "request never arrived"
        time.sleep(0.005)


class TestSuccess:
    def test_forced_tool_answers_with_first_enum_value(
        self, client: anthropic.Anthropic
    ) -> None:
        """A forced tool gets one schema-valid tool_use block by default."""
        message = advise(client)

        assert isinstance(message, Message)
        assert "tool_use" == message.stop_reason
        [block] = message.content
        assert isinstance(block, ToolUseBlock)
        assert "choose_remediation" == block.name
        assert {
            "action_id": "restart_service",
            "diagnosis": "diagnosis from the fake",
            "confidence": 0.9,
        } == block.input
        assert block.id.startswith("toolu_")
        assert message.id.startswith("msg_")
        assert MODEL == message.model

    def test_usage_is_plausible(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """Input tokens are about a quarter of the request body's bytes."""
        message = advise(client)
        sent = int(fake.requests[0].headers["content-length"])

        assert sent // 4 == message.usage.input_tokens
        assert message.usage.output_tokens > 0
        assert 0 == message.usage.cache_read_input_tokens

    def test_schema_types_get_sample_values(
        self, client: anthropic.Anthropic
    ) -> None:
        """Required integers, booleans and strings get 1, true and a string."""
        schema = {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "ok": {"type": "boolean"},
                "why": {"type": "string"},
                "unused": {"type": "string"},
            },
            "required": ["n", "ok", "why"],
        }
        tool = {"name": "t", "input_schema": schema}

        message = advise(
            client, tools=[tool], tool_choice={"type": "tool", "name": "t"}
        )

        assert {
            "n": 1,
            "ok": True,
            "why": "diagnosis from the fake",
        } == message.content[0].input

    def test_default_tool_input_overrides_the_schema(self) -> None:
        """default_tool_input answers every forced call that has no script."""
        chosen = {
            "action_id": "clear_cache",
            "diagnosis": "d",
            "confidence": 1,
        }
        with (
            FakeAnthropic([KEY], default_tool_input=chosen) as fake,
            anthropic.Anthropic(
                api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0
            ) as client,
        ):
            message = advise(client)

        assert chosen == message.content[0].input

    def test_no_forced_tool_answers_with_text(
        self, client: anthropic.Anthropic
    ) -> None:
        """Without tools the answer is one text block, end_turn."""
        message = client.messages.create(
            model=MODEL, max_tokens=64, messages=BODY["messages"]
        )

        assert "end_turn" == message.stop_reason
        assert [TextBlock(type="text", text="text from the fake")] == (
            message.content
        )

    def test_auto_tool_choice_answers_with_text(
        self, client: anthropic.Anthropic
    ) -> None:
        """tool_choice auto gets a text block and stop_reason end_turn."""
        message = advise(client, tool_choice={"type": "auto"})

        assert "end_turn" == message.stop_reason
        [block] = message.content
        assert isinstance(block, TextBlock)
        assert "text from the fake" == block.text

    def test_any_tool_choice_calls_the_first_tool(
        self, client: anthropic.Anthropic
    ) -> None:
        """tool_choice any obliges a tool call: the first tool answers."""
        message = advise(client, tool_choice={"type": "any"})

        assert ("tool_use", "choose_remediation") == (
            message.stop_reason,
            message.content[0].name,
        )

    def test_base_url_with_a_path_prefix(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """A base_url with a path prefix reaches /prefix/v1/messages."""
        client = client_for(base_url=f"{fake.url}/proxy")

        message = advise(client)

        assert isinstance(message, Message)
        assert "/proxy/v1/messages" == fake.requests[0].path


class TestAuth:
    def test_sdk_sends_bearer(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """SDK 2.x authenticates with Authorization: Bearer, accepted."""
        advise(client)
        [request] = fake.requests

        assert KEY == request.key
        assert f"Bearer {KEY}" == request.headers["authorization"]
        assert "x-api-key" not in request.headers

    def test_x_api_key_is_accepted(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """The x-api-key header (older SDKs, raw HTTP) is accepted too."""
        response = post(http, fake)

        assert 200 == response.status_code
        assert "tool_use" == response.json()["stop_reason"]
        assert KEY == fake.requests[0].key
        assert response.headers["request-id"].startswith("req_")
        assert (
            "49" == response.headers["anthropic-ratelimit-requests-remaining"]
        )
        assert "x-should-retry" not in response.headers

    def test_unknown_key_is_401(self, client_for: ClientFactory) -> None:
        """An unknown key gets 401 authentication_error."""
        with pytest.raises(anthropic.AuthenticationError) as info:
            advise(client_for("sk-ant-unknown"))

        assert 401 == info.value.status_code
        assert "authentication_error" == error_of(info.value)["type"]

    def test_missing_key_is_401(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """A request with no key at all gets 401 and is recorded keyless."""
        response = http.post(
            f"{fake.url}/v1/messages", json=BODY, headers=VERSION
        )

        assert 401 == response.status_code
        assert "authentication_error" == response.json()["error"]["type"]
        assert None is fake.requests[0].key

    def test_add_key(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """add_key makes a new key acceptable."""
        fake.add_key("sk-ant-new")

        assert isinstance(advise(client_for("sk-ant-new")), Message)

    def test_missing_version_is_400_with_the_error_shape(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """No anthropic-version header gets 400 in the exact error shape."""
        response = http.post(
            f"{fake.url}/v1/messages", json=BODY, headers={"x-api-key": KEY}
        )
        body = response.json()

        assert 400 == response.status_code
        assert {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "anthropic-version: header is required",
            },
            "request_id": response.headers["request-id"],
        } == body
        assert body["request_id"].startswith("req_")

    def test_any_version_is_accepted(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """Any anthropic-version value is accepted."""
        response = post(http, fake, headers={"anthropic-version": "1999"})

        assert 200 == response.status_code


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param(b"{not json", "not a valid JSON", id="not-json"),
            pytest.param(b"", "body is required", id="empty"),
            pytest.param([1, 2], "not a valid JSON object", id="not-object"),
            pytest.param(
                {k: v for k, v in BODY.items() if k != "model"},
                "model: Field required",
                id="no-model",
            ),
            pytest.param(
                {k: v for k, v in BODY.items() if k != "max_tokens"},
                "max_tokens: Field required",
                id="no-max-tokens",
            ),
            pytest.param(
                {k: v for k, v in BODY.items() if k != "messages"},
                "messages: Field required",
                id="no-messages",
            ),
            pytest.param(
                {**BODY, "tool_choice": {"type": "tool", "name": "rm_rf"}},
                "'rm_rf' not found",
                id="unknown-forced-tool",
            ),
            pytest.param(
                {**BODY, "tools": [], "tool_choice": FORCED},
                "not found",
                id="forced-tool-without-tools",
            ),
        ],
    )
    def test_invalid_request_is_400(
        self,
        fake: FakeAnthropic,
        http: httpx.Client,
        body: Any,
        message: str,
    ) -> None:
        """Bodies the real API refuses get 400 invalid_request_error."""
        fake.script(KEY, Reply(status=500))

        response = post(http, fake, body)
        error = response.json()["error"]

        assert (400, "invalid_request_error") == (
            response.status_code,
            error["type"],
        )
        assert message in error["message"]
        # A rejected request consumes no script: the 500 is still queued.
        assert 500 == post(http, fake).status_code

    def test_chunked_body_is_read(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """A chunked request body is decoded like a sized one."""
        payload = json.dumps(BODY).encode()
        chunks = iter([payload[:10], payload[10:]])

        response = http.post(
            f"{fake.url}/v1/messages",
            content=chunks,
            headers={"x-api-key": KEY, **VERSION},
        )

        assert 200 == response.status_code
        assert "chunked" == fake.requests[0].headers["transfer-encoding"]
        assert BODY == fake.requests[0].body

    def test_oversized_body_is_413(self, fake: FakeAnthropic) -> None:
        """A body over 32 MB gets 413 unread, and the connection closes."""
        port = int(fake.url.rsplit(":", 1)[1])
        head = (
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
            f"x-api-key: {KEY}\r\nanthropic-version: 1\r\n"
            f"content-length: {33 * 1024 * 1024}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk

        status_line, _, rest = answer.partition(b"\r\n")
        assert b"HTTP/1.1 413" == status_line[:12]  # phrase varies by Python
        assert b"connection: close" in rest.lower()
        assert b'"type": "request_too_large"' in rest

    def test_unknown_path_is_404(
        self, fake: FakeAnthropic, http: httpx.Client
    ) -> None:
        """Other paths get 404 not_found_error, and are recorded."""
        response = http.get(
            f"{fake.url}/v1/models", headers={"x-api-key": KEY, **VERSION}
        )

        assert 404 == response.status_code
        assert "not_found_error" == response.json()["error"]["type"]
        assert "/v1/models" == fake.requests[0].path


class TestScriptedErrors:
    def test_429_with_retry_after(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """A scripted 429 carries retry-after and exhausted rate limits."""
        fake.script(KEY, Reply(status=429, retry_after=7))

        with pytest.raises(anthropic.RateLimitError) as info:
            advise(client)
        headers = info.value.response.headers

        assert 429 == info.value.status_code
        assert "7" == headers["retry-after"]
        assert "0" == headers["anthropic-ratelimit-requests-remaining"]
        assert "0" == headers["anthropic-ratelimit-tokens-remaining"]
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert "x-should-retry" not in headers
        assert "rate_limit_error" == info.value.type
        assert RATE_LIMIT_MESSAGE == error_of(info.value)["message"]
        assert headers["request-id"] == info.value.request_id

    @pytest.mark.parametrize(
        ("reply", "name", "value"),
        [
            pytest.param(
                Reply(status=429, retry_after_ms=250),
                "retry-after-ms",
                "250",
                id="ms",
            ),
            pytest.param(
                Reply(status=429, retry_after=1.5),
                "retry-after",
                "1.5",
                id="fraction",
            ),
            pytest.param(
                Reply(status=529, headers={"X-Should-Retry": "false"}),
                "x-should-retry",
                "false",
                id="extra-header",
            ),
        ],
    )
    def test_scripted_headers(
        self,
        fake: FakeAnthropic,
        client: anthropic.Anthropic,
        reply: Reply,
        name: str,
        value: str,
    ) -> None:
        """retry-after-ms, fractional retry-after and extra headers are sent."""
        fake.script(KEY, reply)

        with pytest.raises(anthropic.APIStatusError) as info:
            advise(client)

        assert value == info.value.response.headers[name]

    @pytest.mark.parametrize(
        ("status", "error_type", "exception"),
        [
            (400, "invalid_request_error", anthropic.BadRequestError),
            (401, "authentication_error", anthropic.AuthenticationError),
            (402, "billing_error", anthropic.PaymentRequiredError),
            (403, "permission_error", anthropic.PermissionDeniedError),
            (404, "not_found_error", anthropic.NotFoundError),
            (413, "request_too_large", anthropic.ContentTooLargeError),
            (500, "api_error", anthropic.InternalServerError),
            (503, "api_error", anthropic.ServiceUnavailableError),
            (529, "overloaded_error", anthropic.OverloadedError),
        ],
    )
    def test_status_maps_to_error_type(
        self,
        fake: FakeAnthropic,
        client: anthropic.Anthropic,
        status: int,
        error_type: str,
        exception: type[anthropic.APIStatusError],
    ) -> None:
        """Each status gets the real error.type; the SDK picks its class."""
        fake.script(KEY, Reply(status=status))

        with pytest.raises(exception) as info:
            advise(client)

        assert (status, error_type) == (
            info.value.status_code,
            error_of(info.value)["type"],
        )
        assert "x-should-retry" not in info.value.response.headers
        assert 1 == len(fake.requests)

    def test_overloaded_is_an_internal_server_error(self) -> None:
        """In SDK 2.x OverloadedError subclasses InternalServerError."""
        assert issubclass(
            anthropic.OverloadedError, anthropic.InternalServerError
        )

    def test_error_code_is_in_the_body(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """A scripted error_code lands in error.details.error_code."""
        fake.script(
            KEY, Reply(status=429, error_code="enforced_spend_limit_reached")
        )

        with pytest.raises(anthropic.RateLimitError) as info:
            advise(client)

        assert {"error_code": "enforced_spend_limit_reached"} == (
            error_of(info.value)["details"]
        )
        assert "enforced_spend_limit_reached" == info.value.error_code
        assert "EnforcedSpendLimitReachedError" == type(info.value).__name__

    def test_non_json_200_comes_back_as_str(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """A 200 with an HTML body raises nothing: create() returns a str."""
        fake.script(KEY, Reply(raw_body=b"<html>upstream hiccup</html>"))

        result = advise(client)

        assert "<html>upstream hiccup</html>" == result
        assert not isinstance(result, Message)

    def test_truncated_json_200_with_json_type_raises(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """Truncated JSON labelled application/json escapes as a bare error.

        The SDK does not wrap it: callers see json.JSONDecodeError, which is
        no anthropic.APIError.
        """
        fake.script(
            KEY,
            Reply(
                raw_body=b'{"id": "msg_01',
                headers={"content-type": "application/json"},
            ),
        )

        with pytest.raises(json.JSONDecodeError) as info:
            advise(client)

        assert not isinstance(info.value, anthropic.APIError)

    def test_truncated_json_200_as_html_comes_back_as_str(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """Truncated JSON under the default text/html type returns a str."""
        fake.script(KEY, Reply(raw_body=b'{"id": "msg_01'))

        assert '{"id": "msg_01' == advise(client)

    def test_html_502_is_an_internal_server_error(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """A 502 with an HTML body raises InternalServerError."""
        fake.script(
            KEY, Reply(status=502, raw_body=b"<html>Bad gateway</html>")
        )

        with pytest.raises(anthropic.InternalServerError) as info:
            advise(client)

        assert 502 == info.value.status_code
        assert "<html>Bad gateway</html>" == info.value.body

    def test_drop_is_a_connection_error(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """drop closes the connection unanswered: APIConnectionError."""
        fake.script(KEY, Reply(drop=True))

        with pytest.raises(anthropic.APIConnectionError):
            advise(client)
        assert isinstance(advise(client), Message)


class TestScriptedReplies:
    def test_off_list_tool_input_is_not_validated(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """The SDK returns off-enum tool input as a normal ToolUseBlock."""
        evil = {"action_id": "rm -rf /", "diagnosis": 7, "extra": True}
        fake.script(KEY, Reply(tool_input=evil))

        [block] = advise(client).content

        assert isinstance(block, ToolUseBlock)
        assert evil == block.input

    def test_text_reply_ends_the_turn(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """A scripted text answers a forced tool with end_turn text."""
        fake.script(KEY, Reply(text="I would rather not."))

        message = advise(client)

        assert "end_turn" == message.stop_reason
        assert [TextBlock(type="text", text="I would rather not.")] == (
            message.content
        )

    @pytest.mark.parametrize("reason", ["max_tokens", "refusal"])
    def test_stop_reason_override(
        self, fake: FakeAnthropic, client: anthropic.Anthropic, reason: str
    ) -> None:
        """A scripted stop_reason replaces tool_use."""
        fake.script(KEY, Reply(stop_reason=reason))

        message = advise(client)

        assert reason == message.stop_reason
        assert isinstance(message.content[0], ToolUseBlock)

    def test_per_key_scripts_run_in_order_then_default(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """A key's script is consumed in order, then the default answers."""
        fake.script(KEY, Reply(status=429), Reply(status=529))
        client, other = client_for(KEY), client_for(OTHER)

        statuses = []
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError) as info:
                advise(client)
            statuses.append(info.value.status_code)

        assert [429, 529] == statuses
        assert isinstance(advise(client), Message)
        assert isinstance(advise(other), Message)

    def test_script_all_follows_a_keys_own_script(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """script_all serves any key once that key's own queue is empty."""
        fake.script(KEY, Reply(text="own"))
        fake.script_all(Reply(text="shared"))
        client, other = client_for(KEY), client_for(OTHER)

        texts = [
            advise(c, tool_choice={"type": "auto"}).content[0].text
            for c in (client, client, other)
        ]

        assert ["own", "shared", "text from the fake"] == texts


class TestRecording:
    def test_records_key_path_headers_body(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """Each request is recorded with key, path, headers and body."""
        advise(client)
        [request] = fake.requests

        assert (KEY, "/v1/messages") == (request.key, request.path)
        assert BODY == request.body
        assert "anthropic-version" in request.headers
        assert "0" == request.headers["x-stainless-retry-count"]

    def test_records_monotonic_arrival(
        self, fake: FakeAnthropic, client: anthropic.Anthropic
    ) -> None:
        """t is time.monotonic() at arrival, so gaps can be measured."""
        fake.script(KEY, Reply(delay=0.2))
        before = time.monotonic()

        advise(client)
        advise(client)
        first, second = fake.requests

        assert before <= first.t < second.t <= time.monotonic()
        assert 0.2 <= second.t - first.t < 1.0

    def test_requests_for_and_reset(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """requests_for filters by key; reset forgets requests and scripts."""
        recorded = fake.requests
        fake.script(KEY, Reply(status=500))
        advise(client_for(OTHER))
        advise(client_for(OTHER))

        assert 2 == len(fake.requests_for(OTHER))
        assert [] == fake.requests_for(KEY)

        fake.reset()

        assert [] == recorded
        assert isinstance(advise(client_for(KEY)), Message)
        assert 1 == len(recorded)


class TestTiming:
    def test_timeout_while_others_are_served(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """A delayed reply times the client out; other requests still flow."""
        fake.script(KEY, Reply(delay=1.0))
        slow = client_for(KEY, timeout=0.3)
        fast = client_for(OTHER)
        errors: list[anthropic.APITimeoutError] = []
        elapsed: list[float] = []

        def call_slow() -> None:
            started = time.monotonic()
            try:
                advise(slow)
            except anthropic.APITimeoutError as error:
                errors.append(error)
                elapsed.append(time.monotonic() - started)

        thread = threading.Thread(target=call_slow)
        thread.start()
        wait_for_requests(fake, 1)
        served = advise(fast)  # answered while the slow request sleeps
        thread.join(5)

        assert isinstance(served, Message)
        [error] = errors
        assert isinstance(error, anthropic.APIConnectionError)
        assert 0.3 <= elapsed[0] < 0.8

    def test_stop_returns_while_a_delay_is_pending(
        self, client_for: ClientFactory
    ) -> None:
        """stop() wakes a 30 s delay at once and drops its connection."""
        fake = FakeAnthropic([KEY]).start()
        fake.script(KEY, Reply(delay=30))
        client = client_for(KEY, base_url=fake.url, timeout=60.0)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                advise(client)
            except anthropic.APIConnectionError as error:
                errors.append(error)

        thread = threading.Thread(target=call)
        thread.start()
        wait_for_requests(fake, 1)
        started = time.monotonic()
        fake.stop()
        stopped = time.monotonic() - started
        thread.join(5)

        assert stopped < 1.0
        assert [anthropic.APIConnectionError] == [type(e) for e in errors]

    def test_sdk_retries_a_429_by_default(
        self, fake: FakeAnthropic, client_for: ClientFactory
    ) -> None:
        """With the SDK's default max_retries=2 one call is 3 requests.

        This is why the advisor passes max_retries=0: otherwise the pool
        never sees the 429s, and the key is hammered three times.
        """
        fake.script(KEY, *[Reply(status=429)] * 3)
        client = client_for(KEY, max_retries=anthropic.DEFAULT_MAX_RETRIES)

        with pytest.raises(anthropic.RateLimitError):
            advise(client)

        assert ["0", "1", "2"] == [
            r.headers["x-stainless-retry-count"] for r in fake.requests
        ]


class TestLifecycle:
    def test_url_needs_start(self) -> None:
        """url is only defined while the server runs."""
        fake = FakeAnthropic()

        with pytest.raises(RuntimeError, match="start"):
            _ = fake.url

    def test_stop_is_idempotent_and_restart_works(self) -> None:
        """stop() twice is harmless, and a stopped fake can start again."""
        fake = FakeAnthropic([KEY])
        fake.start()
        fake.stop()
        fake.stop()

        with fake, httpx.Client() as http:
            assert 200 == post(http, fake).status_code

    def test_binds_loopback(self, fake: FakeAnthropic) -> None:
        """The server listens on 127.0.0.1 only."""
        assert fake.url.startswith("http://127.0.0.1:")

    def test_reply_rejects_nonsense(self) -> None:
        """A Reply refuses an impossible status or a negative delay."""
        with pytest.raises(ValueError, match="status"):
            Reply(status=42)
        with pytest.raises(ValueError, match="delay"):
            Reply(delay=-1)

    def test_exports(self) -> None:
        """selfhealing.testing exports a sorted __all__ of existing names."""
        names = selfhealing.testing.__all__

        assert sorted(names) == names
        assert {"FakeAnthropic", "RecordedRequest", "Reply"} <= set(names)
        assert all(hasattr(selfhealing.testing, n) for n in names)


@pytest.mark.anyio
class TestAsync:
    async def test_forced_tool(self, fake: FakeAnthropic) -> None:
        """AsyncAnthropic parses the default forced-tool answer."""
        async with anthropic.AsyncAnthropic(
            api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0
        ) as client:
            message = await client.messages.create(**BODY)

        assert "restart_service" == message.content[0].input["action_id"]

    async def test_429_is_one_request(self, fake: FakeAnthropic) -> None:
        """With max_retries=0 the async client makes exactly one request."""
        fake.script(KEY, Reply(status=429, retry_after=7))
        async with anthropic.AsyncAnthropic(
            api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0
        ) as client:
            with pytest.raises(anthropic.RateLimitError) as info:
                await client.messages.create(**BODY)

        assert (429, "7") == (
            info.value.status_code,
            info.value.response.headers["retry-after"],
        )
        assert 1 == len(fake.requests)

    async def test_delay_does_not_block_others(
        self, fake: FakeAnthropic
    ) -> None:
        """Concurrent calls: the fast one is answered before the slow one."""
        fake.script(KEY, Reply(delay=0.5, text="slow"))
        async with (
            anthropic.AsyncAnthropic(
                api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0
            ) as slow,
            anthropic.AsyncAnthropic(
                api_key=OTHER, base_url=fake.url, max_retries=0, timeout=5.0
            ) as fast,
        ):
            done: list[str] = []

            async def call(client: anthropic.AsyncAnthropic) -> None:
                message = await client.messages.create(**BODY)
                block = message.content[0]
                done.append(block.text if block.type == "text" else "fast")

            async with asyncio.TaskGroup() as group:
                group.create_task(call(slow))
                group.create_task(call(fast))

        assert ["fast", "slow"] == done
