"""Pydantic models shared across boundaries: workflow inputs, signals and results.

Import from the submodules (aiops.models.incident, ...).
"""
