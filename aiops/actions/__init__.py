"""Action adapters (process, http, redis, simulated) behind an executor that acts once per key."""
