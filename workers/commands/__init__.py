"""One module per `aiops` sub-command group; workers/cli.py registers them."""
