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
    """A run stopped before its end: by a signal (Ctrl-C, SIGTERM, SIGHUP: the CLI exits 128 + the signal
    number), or because its Ray went away under it (`ray_lost`: exit 3, as for trials that failed)."""

    def __init__(self, signum: int | None, detail: str = "", *, headline: str | None = None,
                 exit_code: int | None = None) -> None:
        import signal

        self.signum, self.detail = signum, detail
        self.headline = headline or f"interrupted by {signal.Signals(signum).name}"
        self.exit_code = exit_code if exit_code is not None else 128 + (signum or 0)
        super().__init__(self.headline + (f": {detail}" if detail else ""))

    def with_detail(self, detail: str) -> "Interrupted":
        """The same interruption, saying more (what is left, how to resume)."""
        return Interrupted(self.signum, detail, headline=self.headline, exit_code=self.exit_code)


# A run whose Ray was lost ends as one with failed trials does (cli/run.py): trials are left to run again.
RAY_LOST_EXIT = 3


def ray_lost(reason: str) -> Interrupted:
    """The interruption of a run whose Ray stopped under it (a killed raylet)."""
    return Interrupted(None, headline=f"stopped: {reason}", exit_code=RAY_LOST_EXIT)


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
