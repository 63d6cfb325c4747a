"""The toolkit's user-facing errors: the ones a user fixes by changing a command line, a setting, a file or a
folder. The command-line tools (ipt.cli.run_main) print these as one line; any other exception is a bug
of the toolkit (or of a caller's code) and keeps its traceback.

Each error also derives from the built-in type it replaced (ValueError, OSError, ...), so code that
caught the built-in type keeps working.
"""

from __future__ import annotations


class IPTError(Exception):
    """Base of every user-facing error of the toolkit."""


class ConfigError(IPTError, ValueError):
    """A setting, option, name or value that is not valid (a model or training config, a task name, a
    command-line option that does not fit the others)."""


class MissingPathError(ConfigError, FileNotFoundError):
    """A file or folder the user named does not exist (still a FileNotFoundError, as it was)."""


class OutputError(IPTError, OSError):
    """An output that cannot be written: a folder without write permission, on a read-only or full disk, a
    file where a folder should be (still an OSError, as the failed write was)."""
