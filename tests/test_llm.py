"""search.llm.client: the real openai client against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from openai_server import RecordedRequest, ScriptedOpenAIServer, Step, answer, dropped, empty, error, invalid_json
from scripted_llm import ScriptedClient
from search.llm.client import (
    LLMError,
    OpenAIClient,
    SpendCapReached,
    UsageTotals,
    llm_available,
)

SECRET = "sk-test-SECRET123"
MESSAGES = [{"role": "system", "content": "You edit code."}, {"role": "user", "content": "make it faster"}]
# openai waits Retry-After only when it is > 0 (0 falls back to its 0.5 s backoff): 1 ms keeps tests fast
FAST_RETRY = {"retry-after-ms": "1"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEST_LLM_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fast_backoff(monkeypatch):
    """Shrink openai's own backoff (used when no Retry-After comes, e.g. a dropped connection)."""
    import openai._base_client

    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.001, raising=False)


def make_client(server: ScriptedOpenAIServer, **kwargs) -> OpenAIClient:
    kwargs.setdefault("model", "test-model")
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("max_retries", 2)
    return OpenAIClient(base_url=server.base_url, **kwargs)


def records(log_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(log_dir.glob("*.json"))]


# --- normal answers


def test_answer_with_usage_and_cost(openai_server, tmp_path):
    openai_server.push(answer("def f(): pass", prompt_tokens=1200, completion_tokens=300))
    client = make_client(
        openai_server,
        price_prompt_per_million=2.0,
        price_completion_per_million=10.0,
        temperature=0.3,
        max_tokens=512,
        extra_body={"top_k": 20},
    )
    got = client.complete(MESSAGES, purpose="mutate")

    assert got.text == "def f(): pass"
    assert (got.prompt_tokens, got.completion_tokens) == (1200, 300)
    assert got.cost == pytest.approx(1200 * 2.0 / 1e6 + 300 * 10.0 / 1e6)
    assert got.model == "test-model" and got.finish_reason == "stop" and got.seconds > 0
    assert client.usage.to_dict() == {
        "calls": 1, "prompt_tokens": 1200, "completion_tokens": 300,
        "cost": pytest.approx(got.cost), "failures": 0, "seconds": pytest.approx(got.seconds),
    }
    (request,) = openai_server.chat_requests()
    assert request.json["model"] == "test-model"
    assert request.json["messages"] == MESSAGES
    assert request.json["temperature"] == 0.3 and request.json["max_tokens"] == 512
    assert request.json["top_k"] == 20  # extra_body passes through


def test_max_tokens_none_is_not_sent(openai_server):
    openai_server.push(answer("x"))
    make_client(openai_server, max_tokens=None).complete(MESSAGES, purpose="p")
    assert "max_tokens" not in openai_server.chat_requests()[0].json


def test_finish_reason_length_is_returned_and_recorded(openai_server, tmp_path):
    openai_server.push(answer("def f(:", finish_reason="length"))
    got = make_client(openai_server, log_dir=tmp_path).complete(MESSAGES, purpose="mutate")
    assert got.text == "def f(:" and got.finish_reason == "length"
    assert records(tmp_path)[0]["finish_reason"] == "length"


# --- failures: the client's own retries, then LLMError


def test_429_is_retried_then_answers(openai_server):
    openai_server.push(error(429, FAST_RETRY), answer("fine"))
    client = make_client(openai_server)
    assert client.complete(MESSAGES, purpose="p").text == "fine"
    assert len(openai_server.chat_requests()) == 2
    assert client.usage.failures == 0 and client.usage.calls == 1


def test_500_on_every_try_is_an_error_naming_the_status(openai_server, tmp_path):
    openai_server.push(*[error(500, FAST_RETRY)] * 3)
    client = make_client(openai_server, max_retries=2, log_dir=tmp_path)
    with pytest.raises(LLMError, match=r"HTTP 500") as info:
        client.complete(MESSAGES, purpose="p")
    assert openai_server.base_url in str(info.value) and "test-model" in str(info.value)
    assert len(openai_server.chat_requests()) == 3  # max_retries + 1
    assert client.usage.calls == 1 and client.usage.failures == 1
    assert "HTTP 500" in records(tmp_path)[0]["error"]


def test_client_error_is_not_retried(openai_server):
    openai_server.push(error(400), answer("never"))
    with pytest.raises(LLMError, match="HTTP 400"):
        make_client(openai_server).complete(MESSAGES, purpose="p")
    assert len(openai_server.chat_requests()) == 1


def test_timeout_is_an_error(openai_server):
    openai_server.push(answer("late", delay=2.0))
    client = make_client(openai_server, timeout=0.3, max_retries=0)
    start = time.monotonic()
    with pytest.raises(LLMError, match="timeout"):
        client.complete(MESSAGES, purpose="p")
    assert time.monotonic() - start < 1.5
    assert client.usage.failures == 1


def test_dropped_connection_is_retried(openai_server, fast_backoff):
    openai_server.push(dropped(), answer("back"))
    assert make_client(openai_server).complete(MESSAGES, purpose="p").text == "back"
    assert len(openai_server.chat_requests()) == 2


def test_unreachable_server_is_a_connection_error(openai_server, fast_backoff):
    openai_server.push(dropped(), dropped())
    with pytest.raises(LLMError, match="connection error"):
        make_client(openai_server, max_retries=1).complete(MESSAGES, purpose="p")


@pytest.mark.parametrize("step", [empty(), answer(""), answer(None)], ids=["no-choices", "empty", "null"])
def test_empty_answer_is_an_error(openai_server, tmp_path, step):
    openai_server.push(step)
    client = make_client(openai_server, log_dir=tmp_path, price_prompt_per_million=1.0)
    with pytest.raises(LLMError, match="empty answer"):
        client.complete(MESSAGES, purpose="p")
    assert client.usage.failures == 1
    assert client.usage.prompt_tokens > 0  # the server counted the prompt: so do the books
    assert "empty answer" in records(tmp_path)[0]["error"]


def test_invalid_json_is_an_error(openai_server):
    openai_server.push(invalid_json())
    with pytest.raises(LLMError, match="unreadable answer"):
        make_client(openai_server).complete(MESSAGES, purpose="p")


# --- spending cap and resume


def test_spend_cap_stops_the_next_call_without_a_request(openai_server):
    openai_server.push(answer("a", prompt_tokens=1_000_000, completion_tokens=0), answer("b"))
    client = make_client(openai_server, price_prompt_per_million=1.5, spend_cap=1.0)
    client.complete(MESSAGES, purpose="p")
    with pytest.raises(SpendCapReached, match="cap"):
        client.complete(MESSAGES, purpose="p")
    assert len(openai_server.chat_requests()) == 1
    assert client.usage.calls == 1


def test_seeded_usage_counts_towards_cap_and_totals(openai_server):
    openai_server.push(answer("a", prompt_tokens=10, completion_tokens=5))
    seeded = UsageTotals(calls=7, prompt_tokens=100, completion_tokens=50, cost=0.5, failures=1, seconds=9.0)
    client = make_client(openai_server, initial_usage=seeded)
    client.complete(MESSAGES, purpose="p")
    assert (client.usage.calls, client.usage.prompt_tokens, client.usage.failures) == (8, 110, 1)
    assert seeded.calls == 7  # the caller's object is not changed

    capped = make_client(openai_server, spend_cap=0.5)
    capped.restore(seeded.to_dict())
    with pytest.raises(SpendCapReached):
        capped.complete(MESSAGES, purpose="p")
    assert len(openai_server.chat_requests()) == 1


def test_usage_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="tokens_total"):
        UsageTotals.from_dict({"calls": 1, "tokens_total": 3})


def test_records_are_numbered_and_resume_continues(openai_server, tmp_path):
    openai_server.push(answer("one"), error(500, FAST_RETRY), answer("three"))
    client = make_client(openai_server, log_dir=tmp_path, max_retries=0, price_completion_per_million=1.0)
    client.complete(MESSAGES, purpose="mutate")
    with pytest.raises(LLMError):
        client.complete(MESSAGES, purpose="crossover")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001-mutate.json", "0002-crossover.json"]
    first, second = records(tmp_path)
    assert first["messages"] == MESSAGES and first["response"] == "one" and first["error"] is None
    assert first["model"] == "test-model" and first["base_url"] == openai_server.base_url
    assert first["usage"] == {"prompt_tokens": 6, "completion_tokens": 1} and first["cost"] == pytest.approx(1e-6)
    assert second["response"] is None and "HTTP 500" in second["error"]

    resumed = make_client(openai_server, log_dir=tmp_path)
    resumed.complete(MESSAGES, purpose="a/b c")
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "0003-a_b_c.json"


# --- the API key


def test_api_key_is_sent_but_never_written(openai_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)

    def echo_key(body):  # a hostile server that echoes the key back in its error message
        auth = openai_server.chat_requests()[-1].headers["authorization"]
        return Step(status=400, content=f"bad key {auth}")

    openai_server.push(answer("fine"))
    client = make_client(openai_server, api_key_env="TEST_LLM_KEY", log_dir=tmp_path)
    client.complete(MESSAGES, purpose="p")
    openai_server.set_handler(echo_key)
    with pytest.raises(LLMError) as info:
        client.complete(MESSAGES + [{"role": "user", "content": "again"}], purpose="p")

    assert [r.headers["authorization"] for r in openai_server.chat_requests()] == [f"Bearer {SECRET}"] * 2
    assert "HTTP 400" in str(info.value) and "bad key" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in repr(client) and "TEST_LLM_KEY" in repr(client)
    saved = [p.read_text() for p in sorted(tmp_path.iterdir())]
    assert len(saved) == 2 and all(SECRET not in text for text in saved)
    assert "bad key Bearer [redacted]" in saved[1]


def test_base_url_without_key_sends_a_dummy_key(openai_server):
    openai_server.push(answer("local"))
    client = make_client(openai_server, api_key_env="TEST_LLM_KEY")
    assert client.complete(MESSAGES, purpose="p").text == "local"
    assert openai_server.chat_requests()[0].headers["authorization"] == "Bearer unused"


def test_no_base_url_and_no_key_is_refused():
    with pytest.raises(LLMError, match="TEST_LLM_KEY"):
        OpenAIClient(model="m", base_url=None, api_key_env="TEST_LLM_KEY")


def test_base_url_from_environment(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    openai_server.push(answer("via env"))
    client = OpenAIClient(model="m", base_url=None, api_key_env="TEST_LLM_KEY")
    assert client.complete(MESSAGES, purpose="p").text == "via env"


def test_llm_available(monkeypatch):
    ok, why = llm_available(None, "TEST_LLM_KEY")
    assert not ok and "TEST_LLM_KEY" in why

    ok, why = llm_available("http://127.0.0.1:8000/v1", "TEST_LLM_KEY")
    assert ok and "127.0.0.1:8000" in why

    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    ok, why = llm_available(None, "TEST_LLM_KEY")
    assert ok and SECRET not in why

    monkeypatch.setenv("TEST_LLM_KEY", "   ")  # blank is no key
    assert not llm_available(None, "TEST_LLM_KEY")[0]

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    assert llm_available(None, "TEST_LLM_KEY")[0]


# --- concurrency


def test_concurrent_calls_keep_exact_books(openai_server, tmp_path):
    openai_server.default = answer("same", prompt_tokens=3, completion_tokens=2)
    client = make_client(openai_server, log_dir=tmp_path)

    def work():
        for _ in range(5):
            client.complete(MESSAGES, purpose="p")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (client.usage.calls, client.usage.prompt_tokens, client.usage.completion_tokens) == (30, 90, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:04d}-p.json" for i in range(1, 31)]


# --- the scripted client


def test_scripted_client_accounts_like_the_real_one(tmp_path):
    client = ScriptedClient(
        ["a" * 40, RuntimeError("scripted outage"), "b"],
        price_prompt_per_million=1e6,
        price_completion_per_million=2e6,
        log_dir=tmp_path,
    )
    got = client.complete([{"role": "user", "content": "x" * 8}], purpose="mutate")
    assert (got.text, got.prompt_tokens, got.completion_tokens) == ("a" * 40, 2, 10)
    assert got.cost == pytest.approx(2 * 1 + 10 * 2) and got.finish_reason == "stop"
    with pytest.raises(LLMError, match="scripted outage"):
        client.complete(MESSAGES, purpose="crossover")
    client.complete(MESSAGES, purpose="mutate")
    with pytest.raises(LLMError, match="no answers left"):
        client.complete(MESSAGES, purpose="mutate")

    assert (client.usage.calls, client.usage.failures) == (4, 2)
    assert [p.name for p in sorted(tmp_path.iterdir())] == [
        "0001-mutate.json", "0002-crossover.json", "0003-mutate.json", "0004-mutate.json"]
    assert records(tmp_path)[1]["error"] == "scripted outage"
    assert [purpose for _, purpose in client.requests] == ["mutate", "crossover", "mutate", "mutate"]


def test_scripted_client_callable_and_spend_cap():
    client = ScriptedClient(lambda messages, purpose: f"{purpose}:{len(messages)}",
                            price_completion_per_million=1e6, spend_cap=5)
    assert client.complete(MESSAGES, purpose="mutate").text == "mutate:2"  # 2 tokens
    assert client.complete(MESSAGES, purpose="crossover").text == "crossover:2"  # 3 tokens: 5 spent
    with pytest.raises(SpendCapReached):
        client.complete(MESSAGES, purpose="mutate")
    assert len(client.requests) == 2


# --- the server as a standalone script


def test_standalone_server_prints_its_url_and_answers(tmp_path):
    script = tmp_path / "answers.jsonl"
    script.write_text('"first"\n{"content": "second", "completion_tokens": 9}\n')
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("openai_server.py")),
         "--port", "0", "--delay", "0.01", "--script", str(script)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = OpenAIClient(model="m", base_url=url, max_retries=0, timeout=5)
        texts = [client.complete(MESSAGES, purpose="bench").text for _ in range(3)]
        assert texts == ["first", "second", "first"]  # the script cycles
        assert client.usage.completion_tokens == 1 + 9 + 1
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_server_records_and_lists_models(openai_server):
    import urllib.request

    with urllib.request.urlopen(openai_server.base_url + "/models") as response:
        listing = json.load(response)
    assert listing["data"][0]["id"] == "scripted-model"
    assert openai_server.requests[0] == RecordedRequest("GET", "/v1/models", openai_server.requests[0].headers, None)
