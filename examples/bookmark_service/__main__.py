"""`python -m examples.bookmark_service --port N --redis-url URL --data-dir DIR [...]`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from aiops.errors import AiopsError
from examples.bookmark_service.app import create_app
from examples.bookmark_service.options import parse_args
from examples.bookmark_service.registration import definition_json, service_definition


def main(argv: Sequence[str] | None = None) -> int:
    options, print_definition = parse_args(argv)
    if print_definition:
        print(definition_json(service_definition(options)))
        return 0
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        app = create_app(options)
    except AiopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # uvicorn's own access log would double every request in the process log
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
