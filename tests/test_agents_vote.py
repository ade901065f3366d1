"""The weighted vote among agents' proposals (pure): weights from track records, votes for
the same plan add up, ties are broken the same way every time."""

from __future__ import annotations

from aiops.agents.models import TrackRecord
from aiops.agents.proposals import Proposal
from aiops.agents.vote import DIAGNOSTIC_AGENT, cast_vote, plan_from_proposal, plan_key
from aiops.policy.models import ActionSpec

RESTART = [ActionSpec(action_type="restart", target="api")]
SCALE = [ActionSpec(action_type="scale", target="api", parameters={"replicas": 3})]


def _p(agent: str, plan: list[ActionSpec], confidence: float, desc: str = "") -> Proposal:
    return Proposal(agent_id=agent, description=desc or agent, plan=plan, confidence=confidence)


def test_track_record_weight_is_the_beta_posterior_mean() -> None:
    assert TrackRecord(agent_id="a").weight == 0.5
    assert TrackRecord(agent_id="a", successes=8, failures=0).weight == 0.9
    assert TrackRecord(agent_id="a", successes=0, failures=3).weight == 0.2


def test_the_better_track_record_wins_at_equal_confidence() -> None:
    vote = cast_vote(
        [_p(DIAGNOSTIC_AGENT, RESTART, 0.7), _p("scaler", SCALE, 0.7)],
        {DIAGNOSTIC_AGENT: 0.5, "scaler": 0.9},
    )
    assert vote.winner is not None and vote.winner.agent_id == "scaler"
    assert [t.agents for t in vote.tallies] == [["scaler"], [DIAGNOSTIC_AGENT]]
    assert abs(vote.tallies[0].score - 0.63) < 1e-9
    assert "scaler 0.90x0.70" in vote.why and "against" in vote.why


def test_votes_for_the_same_plan_add_up() -> None:
    # two modest agents agreeing beat one confident agent alone
    same = [ActionSpec(action_type="restart", target="api", order=7)]  # order number irrelevant
    vote = cast_vote(
        [_p("a", RESTART, 0.5), _p("b", same, 0.5), _p("c", SCALE, 0.9)],
        {"a": 0.5, "b": 0.5, "c": 0.5},
    )
    assert vote.winner is not None and vote.winner.plan == RESTART
    assert vote.tallies[0].agents == ["a", "b"] and vote.tallies[0].score == 0.5
    assert plan_key(RESTART) == plan_key(same) != plan_key(SCALE)


def test_unknown_agents_weigh_half_and_empty_plans_do_not_vote() -> None:
    vote = cast_vote([_p("new", RESTART, 1.0), _p("idle", [], 1.0)], {})
    assert [b.weight for b in vote.ballots] == [0.5]
    assert vote.winner is not None and vote.winner.agent_id == "new"
    assert cast_vote([], {}).winner is None


def test_ties_are_deterministic_and_favour_todays_choice() -> None:
    a = _p(DIAGNOSTIC_AGENT, RESTART, 0.6)
    b = _p("other", SCALE, 0.6)
    for order in ([a, b], [b, a]):
        vote = cast_vote(order, {DIAGNOSTIC_AGENT: 0.5, "other": 0.5})
        assert vote.winner is not None and vote.winner.agent_id == DIAGNOSTIC_AGENT
    # without the built-in among them, the smaller key wins whatever the order
    c = _p("x", SCALE, 0.6)
    d = _p("y", RESTART, 0.6)
    winners = {cast_vote(o, {}).winning_plan for o in ([c, d], [d, c])}
    assert winners == {min(plan_key(RESTART), plan_key(SCALE))}


def test_service_placeholder_is_the_incidents_service() -> None:
    generic = [ActionSpec(action_type="restart", target="{service}")]
    vote = cast_vote([_p("g", generic, 0.4), _p("s", RESTART, 0.4)], {}, service="api")
    assert len(vote.tallies) == 1 and vote.tallies[0].agents == ["g", "s"]
    plan = plan_from_proposal(_p("g", generic, 0.4), "api", "because")
    assert [p.action.target for p in plan.actions] == ["api"] and plan.why == "because"
