"""An optional root-cause note from an OpenAI-compatible chat model.

Nothing needs it: diagnosis ranks and chooses without it. When AIOPS_LLM_MODEL is set, the
masked problem text and the candidate fixes go to `{OPENAI_BASE_URL}/chat/completions`
through the official `openai` client (aiops.diagnosis.chat), and the answer is kept beside
the plan for the person reading the incident. The text is masked before it leaves the
worker; a slow or failing model gives no note, never a failed diagnosis.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from aiops.config import Settings
from aiops.diagnosis.chat import ChatError, ChatModel
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
        self._chat = ChatModel(model, base_url, api_key, timeout_s)

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
        try:
            note = await self._chat.complete(_SYSTEM, self._prompt(request), max_tokens=300)
        except ChatError as error:
            return RootCauseNote(model=self.model, error=str(error))
        return RootCauseNote(note=note[:2000], model=self.model)


def root_cause_writer(settings: Settings) -> RootCauseWriter | None:
    if not settings.llm_model:
        return None
    return RootCauseWriter(
        settings.llm_model,
        settings.openai_base_url,
        settings.openai_api_key,
        settings.llm_timeout_s,
    )
