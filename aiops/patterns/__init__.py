"""The pattern library: rules that say which events are problems, and how they evolve."""
