"""The bookmark API from the seed: a real HTTP service with switchable faults, for `aiops demo`.

Run it from the repository root:

    python -m examples.bookmark_service --port 8002 --redis-url redis://127.0.0.1:6382/0 \
        --data-dir .aiops/bookmark-api

See README.md in this directory for the endpoints, events, faults and how each is healed.
"""
