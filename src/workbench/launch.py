"""The `workbench` console script: the garbage collector stays off while the program starts.

Start-up allocates long-lived objects only (modules, then the TUI's widgets and styles), so collecting
while they are made is wasted time: about 20 ms of the TUI's first paint on a 2-core machine.
`cli.main` turns the collector back on for every command but the TUI, which freezes the start-up
objects once its panes are built and then collects from a timer (`workbench.ui.gc_schedule`).
It also spares pydantic's plugin discovery (see below).
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> int:
    gc.disable()
    # pydantic looks for plugins by scanning every installed distribution's entry points when the first
    # model is built (the config, before the first paint): 30-50 ms in an environment with the ML stack.
    # The workbench uses no pydantic plugin; a user who sets the variable keeps their value.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        from workbench.cli import main as cli_main

        return cli_main()
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
