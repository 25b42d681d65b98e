"""Errors of the stedgeai driver; each message names the file or command and the problem."""


class StedgeaiError(RuntimeError):
    """The tool failed, timed out or printed something that is not a report (message ends with the log tail)."""


class StedgeaiNotFound(StedgeaiError):
    pass


class StedgeaiReportError(ValueError):
    """A report file is missing, not JSON, or lacks a required key."""
