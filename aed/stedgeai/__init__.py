"""Driver for ST Edge AI Core (`stedgeai`): locate the tool, build its command line, run it, parse its reports."""

from aed.stedgeai.command import COMMANDS, TARGETS, StedgeaiOptions, build_argv
from aed.stedgeai.errors import StedgeaiError, StedgeaiNotFound, StedgeaiReportError
from aed.stedgeai.locate import find_stedgeai
from aed.stedgeai.reports import parse_c_info, parse_text_report
from aed.stedgeai.runner import RunResult, run_stedgeai, tool_version

__all__ = [
    "COMMANDS",
    "TARGETS",
    "RunResult",
    "StedgeaiError",
    "StedgeaiNotFound",
    "StedgeaiOptions",
    "StedgeaiReportError",
    "build_argv",
    "find_stedgeai",
    "parse_c_info",
    "parse_text_report",
    "run_stedgeai",
    "tool_version",
]
