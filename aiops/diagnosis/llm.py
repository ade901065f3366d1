"""An optional root-cause note from an OpenAI-compatible chat model.

Nothing needs it: diagnosis ranks and chooses without it. When AIOPS_LLM_MODEL is set, the
masked problem text and the candidate fixes go to `{OPENAI_BASE_URL}/chat/completions`, and
the answer is kept beside the plan for the person reading the incident. The text is masked
before it leaves the worker; a slow or failing model gives no note, never a failed diagnosis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from aiops.config import Settings
from aiops.models.diagnosis import Candidate
from aiops.privacy import mask

_SYSTEM = (
    "You are an SRE assistant. Given an incident and the known problems it resembles, "
    "write at most three sentences: the most likely root cause, and what to check first. "
    "Do not invent facts that are not in the incident text."
)


class RootCauseRequest(BaseModel):
    incident_id: str
    masked_text: str
    candidates: list[Candidate] = Field(default_factory=list)


class RootCauseNote(BaseModel):
    note: str | None = None
    model: str | None = None
    error: str | None = Field(default=None, description="why there is no note, if there is none")


class RootCauseWriter:
    def __init__(
        self, model: str, base_url: str, api_key: SecretStr | None, timeout_s: float = 20.0
    ) -> None:
        self.model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self._timeout = timeout_s

    def _prompt(self, request: RootCauseRequest) -> str:
        lines = [f"Incident: {mask(request.masked_text)}"]
        for c in request.candidates[:5]:
            lines.append(
                f"- similar ({c.similarity:.2f}): {mask(c.problem_description)}; "
                f"known fix: {mask(c.solution_description)} "
                f"({c.successes} worked, {c.failures} failed)"
            )
        if not request.candidates:
            lines.append("No known problem is similar.")
        return "\n".join(lines)

    async def write(self, request: RootCauseRequest) -> RootCauseNote:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 300,
            "messages": [
                {"role": "system", "content": _SYSTEM},
                {"role": "user", "content": self._prompt(request)},
            ],
        }
        try:
            # the whole call is bounded, not each read: a reply that trickles in is cut too
            async with (
                asyncio.timeout(self._timeout),
                httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as http,
            ):
                response = await http.post(self._url, json=body)
                response.raise_for_status()
                note = response.json()["choices"][0]["message"]["content"]
        except (
            httpx.HTTPError,
            httpx.InvalidURL,
            TimeoutError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
        ) as error:
            return RootCauseNote(model=self.model, error=f"{type(error).__name__}: {error}"[:300])
        if not isinstance(note, str) or not note.strip():
            return RootCauseNote(model=self.model, error="the model returned no text")
        return RootCauseNote(note=note.strip()[:2000], model=self.model)


def root_cause_writer(settings: Settings) -> RootCauseWriter | None:
    if not settings.llm_model:
        return None
    return RootCauseWriter(
        settings.llm_model,
        settings.openai_base_url,
        settings.openai_api_key,
        settings.llm_timeout_s,
    )
