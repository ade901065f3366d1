"""One chat completion from any OpenAI-compatible server, through the official `openai`
client: the root-cause note and the tool drafter both ask through here.

Without an API key (a local Ollama or vLLM) no Authorization header is sent at all, rather
than a made-up key. The whole call is bounded by the timeout, not each read, so a reply
that trickles in is cut too; failures come back as ChatError with the reason.
"""

from __future__ import annotations

import asyncio

import openai
from openai import AsyncOpenAI
from pydantic import SecretStr

from aiops.errors import AiopsError

# the client insists on a key; with none we send this and omit the header per request
_NO_KEY = "no-key"


class ChatError(AiopsError):
    pass


def openai_client(
    base_url: str, api_key: SecretStr | None, timeout_s: float, max_retries: int = 0
) -> AsyncOpenAI:
    key = api_key.get_secret_value() if api_key is not None else ""
    return AsyncOpenAI(
        api_key=key or _NO_KEY, base_url=base_url, timeout=timeout_s, max_retries=max_retries
    )


def auth_headers(api_key: SecretStr | None) -> dict[str, str | openai.Omit]:
    """Per-request headers: the Authorization header removed when there is no key."""
    if api_key is not None and api_key.get_secret_value():
        return {}
    return {"Authorization": openai.Omit()}


class ChatModel:
    def __init__(
        self, model: str, base_url: str, api_key: SecretStr | None, timeout_s: float = 20.0
    ) -> None:
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = timeout_s

    async def complete(self, system: str, user: str, max_tokens: int = 300) -> str:
        """The model's answer text; ChatError says why there is none."""
        try:
            async with (
                asyncio.timeout(self._timeout),
                openai_client(self.base_url, self._api_key, self._timeout) as client,
            ):
                answer = await client.chat.completions.create(
                    model=self.model,
                    temperature=0,
                    max_tokens=max_tokens,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    extra_headers=auth_headers(self._api_key),
                )
        except (openai.OpenAIError, TimeoutError, ValueError) as error:
            raise ChatError(f"{type(error).__name__}: {error}"[:300]) from None
        if not answer.choices:
            raise ChatError("the model returned no choices")
        text = answer.choices[0].message.content
        if not isinstance(text, str) or not text.strip():
            raise ChatError("the model returned no text")
        return text.strip()
