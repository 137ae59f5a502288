"""Exceptions whose message is meant for the user: the CLI prints them without a traceback."""


class ConnectomeError(Exception):
    """Base class for errors caused by user input or environment, not by a bug."""


class SpecError(ConnectomeError):
    """A connectivity graph or network spec is invalid."""


class ConfigError(ConnectomeError):
    """A configuration (study file, CLI flags, trial config) is invalid."""


class DatasetError(ConnectomeError):
    """A dataset is unknown or its files cannot be found."""


class Interrupted(Exception):
    """A run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP): the CLI exits 128 + the signal number."""

    def __init__(self, signum: int, detail: str = "") -> None:
        import signal

        self.signum, self.detail = signum, detail
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}" + (f": {detail}" if detail else ""))


def unknown_name(kind: str, name: str, known) -> str:
    """Message for an unknown registry key that lists the known ones."""
    return f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}"


def describe_validation(err, where: str) -> str:
    """A pydantic ValidationError on one line: `key: message` per problem, joined by '; '.

    `where` tells the user where the allowed keys are defined (for an unknown key)."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key (check spelling; {where})"
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)
