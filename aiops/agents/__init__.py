"""Agents: the seed's UniversalAgent contract, the built-in agents on it, custom agents
from the `aiops.agents` entry-point group, and the weighted vote among their proposals.

Import the submodules directly (aiops.agents.protocol, .vote, ...): aiops.models imports
aiops.agents.proposals, so this package imports nothing eagerly.
"""
