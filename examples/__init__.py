"""Example services aiops operates; run each from the repository root: python -m examples.NAME"""
