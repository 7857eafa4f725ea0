"""A scripted LLM client, the test double of `search.llm.client.OpenAIClient`.

It answers from a script instead of the network and keeps the same books (usage, spending cap,
numbered call records), because it shares `BookkeepingClient` with the real client:

    llm = ScriptedClient(["DESCRIPTION: ...", RuntimeError("outage")])
    llm.complete(messages, purpose="mutate").text
    llm.requests  # (messages, purpose) of every call
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Callable, Sequence

from search.llm.client import BookkeepingClient, LLMError, LLMResponse, RawAnswer, UsageTotals


class ScriptedClient(BookkeepingClient):
    """An LLMClient that answers from a script.

    Args:
        answers: a list of answers used in order (a str is the answer; an exception instance is a
            failed call, raised as LLMError), or a callable `(messages, purpose) -> str` (it may
            raise LLMError for a failed call).
        model: the model name put in responses and records.
        finish_reason: the finish_reason of every answer.
        price_prompt_per_million, price_completion_per_million, spend_cap, log_dir, initial_usage:
            as for OpenAIClient. Token counts are estimated as one token per 4 characters.

    `requests` holds (messages, purpose) of every call, for assertions.
    """

    def __init__(
        self,
        answers: Sequence[str | BaseException] | Callable[[list[dict], str], str],
        *,
        model: str = "scripted",
        finish_reason: str = "stop",
        price_prompt_per_million: float = 0.0,
        price_completion_per_million: float = 0.0,
        spend_cap: float | None = None,
        log_dir: Path | None = None,
        initial_usage: UsageTotals | None = None,
    ) -> None:
        super().__init__(
            model=model,
            base_url=None,
            price_prompt_per_million=price_prompt_per_million,
            price_completion_per_million=price_completion_per_million,
            spend_cap=spend_cap,
            log_dir=log_dir,
            initial_usage=initial_usage,
        )
        self.finish_reason = finish_reason
        self._answer_fn = answers if callable(answers) else None
        self._answers = list(answers) if not callable(answers) else []
        self._answers_lock = threading.Lock()
        self.requests: list[tuple[list[dict], str]] = []

    def __repr__(self) -> str:
        return f"ScriptedClient(model={self.model!r}, answers_left={len(self._answers)})"

    def complete(self, messages: list[dict], *, purpose: str) -> LLMResponse:
        """The next scripted answer, accounted and recorded like a real call.

        Raises:
            SpendCapReached: the spending cap is reached.
            LLMError: a scripted failure, or no answers are left.
        """
        return self._call(messages, purpose, {}, lambda: self._next(messages, purpose))

    def _next(self, messages: list[dict], purpose: str) -> RawAnswer:
        with self._answers_lock:
            self.requests.append((messages, purpose))
            if self._answer_fn is None:
                if not self._answers:
                    raise LLMError(f"scripted client has no answers left (call for {purpose!r})")
                item = self._answers.pop(0)
        if self._answer_fn is not None:
            item = self._answer_fn(messages, purpose)
        if isinstance(item, BaseException):
            raise LLMError(str(item) or type(item).__name__)
        text = str(item)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        error = None if text else "empty answer (scripted)"
        return RawAnswer(text, _estimate_tokens(prompt_chars), _estimate_tokens(len(text)), self.model,
                         self.finish_reason, error)


def _estimate_tokens(chars: int) -> int:
    """One token per 4 characters, rounded up."""
    return math.ceil(chars / 4)
