#!/usr/bin/env python3
"""Entry point: ``python run_gateway.py SUBCOMMAND ...`` (see gateway/cli.py)."""

from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
