"""Custom agents from the `aiops.agents` entry-point group, found by importlib.metadata in a
real (tiny) installed distribution: the README's example loads, is checked against the
protocol and wins the vote when its track record is better; broken ones are named."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from aiops.agents.builtin import BUILTIN_IDS
from aiops.agents.diagnostic import DiagnosticAgent
from aiops.agents.loader import AgentLoadError, load_custom_agents, validate
from aiops.agents.models import AgentContext
from aiops.agents.protocol import UniversalAgent
from aiops.agents.vote import DIAGNOSTIC_AGENT, cast_vote
from aiops.models.diagnosis import Candidate
from aiops.policy.models import ActionSpec

EXAMPLE = Path(__file__).parents[1] / "examples" / "agents"
README = Path(__file__).parents[1] / "README.md"

BROKEN = textwrap.dedent(
    """
    class SyncAgent:
        agent_id = "sync"
        kind = "custom"
        capabilities = ["diagnose"]
        def observe(self, event): return None
        def analyze(self, context): return None
        def act(self, context, proposal): return None
        def learn(self, outcome): return None
        def collaborate(self, context): return None
        def health_check(self): return None

    class NoMethods:
        agent_id = "nothing"

    def explode():
        raise RuntimeError("no config file")
    """
)


def _install(site: Path, entry_points: dict[str, str]) -> None:
    """A distribution as pip leaves it: modules plus a .dist-info with entry_points.txt."""
    shutil.copy(EXAMPLE / "cache_first.py", site / "cache_first.py")
    (site / "broken_agents.py").write_text(BROKEN)
    info = site / "aiops_agent_cache_first-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aiops-agent-cache-first\nVersion: 0.1.0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[aiops.agents]\n{lines}")


def _context(text: str) -> AgentContext:
    return AgentContext(
        incident_id="incident-1",
        text=text,
        service="bookmark-api",
        category="anomaly",
        candidates=[
            Candidate(
                problem_id="p1",
                problem_description="memory usage keeps growing",
                problem_service="bookmark-api",
                similarity=0.9,
                solution_id="s1",
                solution_description="Restart the service",
                actions=[ActionSpec(action_type="restart", target="bookmark-api")],
                successes=3,
                failures=1,
            )
        ],
    )


async def test_the_example_agent_loads_from_its_entry_point_and_wins_on_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the entry point the example's pyproject declares
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert 'cache-first = "cache_first:CacheFirst"' in pyproject
    _install(tmp_path, {"cache-first": "cache_first:CacheFirst"})
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_custom_agents(taken=set(BUILTIN_IDS))
    assert loaded.errors == []
    [agent] = [a for a in loaded.agents if a.agent_id == "cache-first"]
    assert isinstance(agent, UniversalAgent)
    # the README shows this very agent
    assert (EXAMPLE / "cache_first.py").read_text().split('"""', 2)[2].strip() in README.read_text()

    context = _context("bookmark-api memory_usage is anomalous: above its baseline")
    builtin = await DiagnosticAgent().analyze(context)
    custom = await agent.collaborate(context)
    assert builtin is not None and custom is not None
    assert await agent.collaborate(_context("disk full")) is None  # not its kind: no vote
    ballots = [builtin, custom]
    # a poor record: the built-in's known fix; a better one: the custom agent's plan
    worse = cast_vote(ballots, {DIAGNOSTIC_AGENT: 0.8, "cache-first": 0.2}, service="bookmark-api")
    assert worse.winner is not None and worse.winner.agent_id == DIAGNOSTIC_AGENT, worse.why
    better = cast_vote(ballots, {DIAGNOSTIC_AGENT: 0.5, "cache-first": 0.9}, service="bookmark-api")
    assert better.winner is not None and better.winner.agent_id == "cache-first", better.why
    assert better.winner.plan[0].action_type == "cache_clear"


def test_broken_entry_points_are_named_and_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(
        tmp_path,
        {
            "cache-first": "cache_first:CacheFirst",
            "missing-module": "no_such_module:Agent",
            "sync-methods": "broken_agents:SyncAgent",
            "half-an-agent": "broken_agents:NoMethods",
            "explodes": "broken_agents:explode",
            "impostor": "cache_first:CacheFirst",  # a second agent with the same id
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_custom_agents(taken=set(BUILTIN_IDS))
    assert [a.agent_id for a in loaded.agents] == ["cache-first"]
    errors = {e.entry_point: str(e) for e in loaded.errors}
    assert set(errors) == {
        "missing-module",
        "sync-methods",
        "half-an-agent",
        "explodes",
        "impostor",
    }
    assert "cannot import no_such_module:Agent" in errors["missing-module"]
    assert "must be async" in errors["sync-methods"]
    assert "missing kind, capabilities, observe" in errors["half-an-agent"]
    assert "no config file" in errors["explodes"]
    assert "already taken" in errors["impostor"]
    assert all("'aiops.agents'" not in m and "aiops.agents" in m for m in errors.values())


def test_an_agent_may_not_take_a_builtin_id() -> None:
    with pytest.raises(AgentLoadError, match="already taken"):
        validate(DiagnosticAgent(), "mine", set(BUILTIN_IDS))
