"""The LLM client: any OpenAI-compatible Chat Completions endpoint, and the books every client keeps.

The only module that imports `openai`. `BookkeepingClient` keeps the books of a client (the
OpenAI one here, the scripted test double in `tests/scripted_llm.py`): a running `UsageTotals`
(calls, tokens, cost, failures, seconds), an optional spending cap checked before each call,
and one JSON record per call under `log_dir` (`0001-mutate.json`, ...):

    client = OpenAIClient(model="qwen2.5-coder", base_url="http://127.0.0.1:8000/v1",
                          log_dir=run_dir / "llm")
    answer = client.complete([{"role": "user", "content": "..."}], purpose="mutate")
    answer.text, answer.finish_reason, client.usage.to_dict()

Retries and timeouts are the `openai` client's own (`max_retries`, `timeout`: it retries
connection errors, 408, 409, 429 and 5xx, honouring Retry-After). The API key is read from the
environment variable named by `api_key_env` and is never written to a record, a message or a
repr. Local servers (vLLM, Ollama, llama.cpp) need no key: with a base_url and no key in the
environment the client sends the dummy key "unused".
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit, urlunsplit

import openai

from eval.files import write_atomic

DUMMY_API_KEY = "unused"
_RECORD_NAME = re.compile(r"^(\d+)-.*\.json$")
_REDACTED = "[redacted]"


@dataclass
class LLMResponse:
    """One answer of the LLM."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float  # in the currency of the configured prices
    model: str  # the model that answered, as the server names it
    seconds: float  # wall-clock time of the call, retries included
    finish_reason: str  # "stop", "length" (cut off by max_tokens), ... as the server says


class LLMError(Exception):
    """The call failed after the client's own retries; the message says why."""


class SpendCapReached(LLMError):
    """The configured spending cap is reached; no call was made."""


@dataclass
class UsageTotals:
    """Running totals of one client. `calls` counts every attempted call, failures included."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    failures: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageTotals:
        """Totals from `to_dict()` output (a resumed run's saved totals).

        Raises:
            ValueError: a key that is not a UsageTotals field.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown usage keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


class LLMClient(Protocol):
    """What the operators need from an LLM."""

    usage: UsageTotals

    def complete(self, messages: list[dict], *, purpose: str) -> LLMResponse:
        """Answer a chat; `purpose` (e.g. "mutate") names the call in the records."""
        ...


def llm_available(base_url: str | None, api_key_env: str) -> tuple[bool, str]:
    """Whether an OpenAIClient with these settings can be made, and why (never showing the key).

    A base_url (argument, else the OPENAI_BASE_URL environment variable) is enough: local servers
    need no key. Without one, the environment variable `api_key_env` must hold a key.
    """
    url = _effective_base_url(base_url)
    has_key = bool(os.environ.get(api_key_env, "").strip())
    if url is not None:
        if has_key:
            return True, f"endpoint {_display_url(url)} with the key from ${api_key_env}"
        return True, f"endpoint {_display_url(url)} without a key (${api_key_env} is not set; a dummy key is sent)"
    if has_key:
        return True, f"the OpenAI API with the key from ${api_key_env}"
    return False, f"no base_url is set and the environment variable {api_key_env} holds no API key"


# --- shared bookkeeping: usage, spending cap, numbered call records


class _Ledger:
    """Usage totals, the spending cap and the numbered call records, behind one lock."""

    def __init__(
        self,
        *,
        price_prompt_per_million: float,
        price_completion_per_million: float,
        spend_cap: float | None,
        log_dir: Path | None,
        initial_usage: UsageTotals | None,
    ) -> None:
        self.price_prompt_per_million = float(price_prompt_per_million)
        self.price_completion_per_million = float(price_completion_per_million)
        self.spend_cap = spend_cap
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.usage = dataclasses.replace(initial_usage) if initial_usage is not None else UsageTotals()
        self._lock = threading.Lock()
        self._next_index = 1
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            found = [int(m.group(1)) for p in self.log_dir.iterdir() if (m := _RECORD_NAME.match(p.name))]
            self._next_index = max(found, default=0) + 1

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_prompt_per_million / 1e6
            + completion_tokens * self.price_completion_per_million / 1e6
        )

    def restore(self, usage: dict[str, Any]) -> None:
        new = UsageTotals.from_dict(usage)
        with self._lock:
            self.usage = new

    def begin(self) -> int:
        """Check the cap and take the next record number."""
        with self._lock:
            if self.spend_cap is not None and self.usage.cost >= self.spend_cap:
                raise SpendCapReached(
                    f"spending cap reached: {self.usage.cost:.4f} spent of a cap of {self.spend_cap:.4f}; "
                    "raise the cap (llm.spend_cap) to go on"
                )
            index = self._next_index
            self._next_index += 1
            return index

    def finish(self, *, prompt_tokens: int, completion_tokens: int, cost: float, seconds: float, failed: bool) -> None:
        with self._lock:
            u = self.usage
            u.calls += 1
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.cost += cost
            u.seconds += seconds
            u.failures += int(failed)

    def write(self, index: int, purpose: str, record: dict[str, Any], secret: str | None) -> None:
        """Save one call record (atomically), with the secret blanked wherever it might appear."""
        if self.log_dir is None:
            return
        text = json.dumps({"index": index, "purpose": purpose, **record}, indent=2, ensure_ascii=False, default=str)
        text = _redact(text, secret)
        # the key can be in JSON text escaped differently from the raw string: blank that form too
        if secret:
            text = _redact(text, json.dumps(secret)[1:-1])
        path = self.log_dir / f"{index:04d}-{_slug(purpose)}.json"
        write_atomic(path, text + "\n")


class BookkeepingClient:
    """The books of an LLM client: the ledger, its `usage`, `restore`, and the record around a call.

    A client subclasses it and answers `complete` with `self._call(messages, purpose, params,
    send)`, where `send()` makes the call and returns a `RawAnswer` (or raises LLMError); a
    client whose records could hold a secret overrides `_secret`.

    Args:
        model: the model name put in responses and records.
        base_url: the endpoint, shown (without credentials) in the records; None for none.
        price_prompt_per_million, price_completion_per_million: prices per million tokens.
        spend_cap: no call is started once the total cost reaches this (None: no cap).
        log_dir: where the numbered call records go (None: none are written).
        initial_usage: totals to continue from (a resumed run).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        price_prompt_per_million: float = 0.0,
        price_completion_per_million: float = 0.0,
        spend_cap: float | None = None,
        log_dir: Path | None = None,
        initial_usage: UsageTotals | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self._ledger = _Ledger(
            price_prompt_per_million=price_prompt_per_million,
            price_completion_per_million=price_completion_per_million,
            spend_cap=spend_cap,
            log_dir=log_dir,
            initial_usage=initial_usage,
        )

    @property
    def usage(self) -> UsageTotals:
        return self._ledger.usage

    def restore(self, usage: dict[str, Any]) -> None:
        """Continue from previous totals (a resumed run): `usage` as saved by `usage.to_dict()`."""
        self._ledger.restore(usage)

    def _secret(self) -> str | None:
        return None

    def _call(
        self, messages: list[dict], purpose: str, params: dict[str, Any], send: Callable[[], RawAnswer]
    ) -> LLMResponse:
        """Run `send` once with the cap check, timing, accounting and record around it."""
        index = self._ledger.begin()
        started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        t0 = time.monotonic()
        answer: RawAnswer | None = None
        error: str | None = None
        try:
            answer = send()
            if answer.error is not None:
                error = answer.error
        except LLMError as exc:
            error = _redact(str(exc), self._secret())
        seconds = time.monotonic() - t0

        prompt_tokens = answer.prompt_tokens if answer else 0
        completion_tokens = answer.completion_tokens if answer else 0
        cost = self._ledger.cost(prompt_tokens, completion_tokens)
        self._ledger.finish(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            seconds=seconds,
            failed=error is not None,
        )
        self._ledger.write(
            index,
            purpose,
            {
                "started": started,
                "seconds": round(seconds, 4),
                "model": answer.model if answer and answer.model else self.model,
                "base_url": _display_url(self.base_url) if self.base_url else None,
                "params": params,
                "messages": messages,
                "response": answer.text if answer else None,
                "finish_reason": answer.finish_reason if answer else None,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
                "cost": cost,
                "error": error,
            },
            self._secret(),
        )
        if error is not None:
            raise LLMError(error)
        assert answer is not None
        return LLMResponse(
            text=answer.text or "",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            model=answer.model or self.model,
            seconds=seconds,
            finish_reason=answer.finish_reason,
        )


@dataclass
class RawAnswer:
    """What came back from one call, before accounting; `error` set for an unusable answer."""

    text: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str
    error: str | None = None


# --- the OpenAI-compatible client


class OpenAIClient(BookkeepingClient):
    """An LLMClient over any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

    Args:
        model: the model name the server knows.
        base_url: the endpoint, e.g. "http://127.0.0.1:8000/v1"; None: OPENAI_BASE_URL from the
            environment, else the OpenAI API.
        api_key_env: the environment variable that holds the key (read here, never stored in a
            record). Without a key a base_url is required; the dummy key "unused" is then sent.
        temperature: sampling temperature.
        max_tokens: the answer's token limit, sent as `max_tokens` (what vLLM, Ollama and llama.cpp
            read); None sends none (then put e.g. `max_completion_tokens` in extra_body).
        timeout: seconds for one HTTP request.
        max_retries: retries of the openai client (connection errors, 408, 409, 429, 5xx).
        price_prompt_per_million, price_completion_per_million: prices per million tokens.
        spend_cap: no call is started once the total cost reaches this (None: no cap).
        log_dir: where the numbered call records go (None: none are written).
        extra_body: extra JSON fields for the request, passed through unchanged.
        initial_usage: totals to continue from (a resumed run).

    Raises:
        LLMError: no base_url and no key in the environment.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.8,
        max_tokens: int | None = 8192,
        timeout: float = 300,
        max_retries: int = 4,
        price_prompt_per_million: float = 0.0,
        price_completion_per_million: float = 0.0,
        spend_cap: float | None = None,
        log_dir: Path | None = None,
        extra_body: dict | None = None,
        initial_usage: UsageTotals | None = None,
    ) -> None:
        usable, why = llm_available(base_url, api_key_env)
        if not usable:
            raise LLMError(f"cannot make an LLM client for model {model!r}: {why}")
        super().__init__(
            model=model,
            base_url=_effective_base_url(base_url),
            price_prompt_per_million=price_prompt_per_million,
            price_completion_per_million=price_completion_per_million,
            spend_cap=spend_cap,
            log_dir=log_dir,
            initial_usage=initial_usage,
        )
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body) if extra_body else None
        self._client = openai.OpenAI(
            api_key=os.environ.get(api_key_env, "").strip() or DUMMY_API_KEY,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        if self.base_url is None:
            self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:
        return (
            f"OpenAIClient(model={self.model!r}, base_url={_display_url(self.base_url)!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _secret(self) -> str | None:
        key = os.environ.get(self.api_key_env, "").strip()
        return key or None

    def complete(self, messages: list[dict], *, purpose: str) -> LLMResponse:
        """Send one chat completion request and account for it.

        Raises:
            SpendCapReached: the spending cap is reached (no request is sent).
            LLMError: the request failed after the client's retries, or the answer is empty or
                unreadable; the message names the status or cause, the endpoint and the model.
        """
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return self._call(messages, purpose, params, lambda: self._send(messages))

    def _send(self, messages: list[dict]) -> RawAnswer:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        where = f"{_display_url(self.base_url)} (model {self.model!r})"
        try:
            response = self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise LLMError(
                f"timeout: no answer from {where} within {self.timeout:g} s (max_retries={self.max_retries})"
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            raise LLMError(
                f"connection error: {where} could not be reached (max_retries={self.max_retries}): {detail}"
            ) from None
        except openai.APIStatusError as exc:
            raise LLMError(
                f"HTTP {exc.status_code} from {where} (max_retries={self.max_retries}): {_shorten(exc.message)}"
            ) from None
        except openai.OpenAIError as exc:
            raise LLMError(f"request to {where} failed: {type(exc).__name__}: {_shorten(str(exc))}") from None
        except ValueError as exc:  # a body that is not valid JSON
            raise LLMError(f"unreadable answer from {where}: {type(exc).__name__}: {_shorten(str(exc))}") from None
        return self._read(response, where)

    def _read(self, response: Any, where: str) -> RawAnswer:
        if not hasattr(response, "choices"):  # the server sent something that is not a completion
            return RawAnswer(None, 0, 0, self.model, "", f"unreadable answer from {where}: {_shorten(str(response))}")
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        model = getattr(response, "model", None) or self.model
        choices = response.choices or []
        choice = choices[0] if choices else None
        text = getattr(getattr(choice, "message", None), "content", None) if choice is not None else None
        finish_reason = (getattr(choice, "finish_reason", None) or "") if choice is not None else ""
        error = None if text else f"empty answer from {where} (finish_reason={finish_reason or None!r})"
        return RawAnswer(text, prompt_tokens, completion_tokens, model, str(finish_reason), error)


# --- helpers


def _effective_base_url(base_url: str | None) -> str | None:
    if base_url:
        return base_url
    return os.environ.get("OPENAI_BASE_URL") or None


def _display_url(url: str | None) -> str:
    """The URL without user:password, for messages and records."""
    if not url:
        return "<default endpoint>"
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, _REDACTED) if secret else text


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _slug(purpose: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", purpose).strip("._") or "call"
