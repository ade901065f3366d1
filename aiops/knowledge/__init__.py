"""The knowledge graph: problems, solutions, insights and their edges, with hybrid search."""

from aiops.knowledge.models import ProblemIn, SearchHit, SolutionIn
from aiops.knowledge.store import KnowledgeGraph

__all__ = ["KnowledgeGraph", "ProblemIn", "SearchHit", "SolutionIn"]
