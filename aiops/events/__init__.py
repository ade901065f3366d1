"""The event mesh: the envelope and its wire format, publishing to Redis Streams, the
listener pipeline (validate, dead-letter, store, route, acknowledge), the event store,
problem detection, routing to incidents and subscriptions, replay and health figures.

Import from the submodules (`aiops.events.envelope`, `aiops.events.mesh`, ...): this
package imports nothing, so a workflow can pass the envelope through the sandbox without
dragging Redis or asyncpg in.
"""
