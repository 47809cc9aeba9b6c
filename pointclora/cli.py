"""The one error-to-exit convention of every tool: a user error prints one `error: ...` line on
stderr and gives exit status 2, with no traceback; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

# what bad input (a file, a key, an argument, a shape) raises in this package
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, TypeError, ImportError, IndexError)
EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input found before any work: one message that names the file, key or argument."""


def message(err: BaseException) -> str:
    """The text of an error (a KeyError's own message, not its repr)."""
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def run_tool(main: Callable[[], int | None], errors: Sequence[type] = USER_ERRORS) -> int:
    """Runs a tool's `main()`; an error of `errors` (or a UserError) prints one line and returns 2."""
    try:
        status = main()
    except (UserError, *errors) as err:
        print(f"error: {message(err)}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0 if status is None else int(status)


__all__ = ["EXIT_USER_ERROR", "USER_ERRORS", "UserError", "message", "run_tool"]
