"""Driver for ST Edge AI Core (`stedgeai`): locate the tool, build its command line, run it, parse its reports,
and map one conversion into the convert step's record."""

from aed.stedgeai.command import COMMANDS, TARGETS, StedgeaiOptions, Target, build_argv
from aed.stedgeai.conversion import (
    ConversionRecord,
    ConvertParams,
    EstimatorFigures,
    StedgeaiFigures,
    conversion_record,
    convert_with_stedgeai,
    estimator_figures,
    locate_tool,
)
from aed.stedgeai.errors import StedgeaiError, StedgeaiNotFound, StedgeaiReportError
from aed.stedgeai.locate import find_stedgeai
from aed.stedgeai.reports import parse_c_info, parse_text_report
from aed.stedgeai.runner import RunResult, run_stedgeai, tool_version

__all__ = [
    "COMMANDS",
    "TARGETS",
    "ConversionRecord",
    "ConvertParams",
    "EstimatorFigures",
    "RunResult",
    "StedgeaiError",
    "StedgeaiFigures",
    "StedgeaiNotFound",
    "StedgeaiOptions",
    "StedgeaiReportError",
    "Target",
    "build_argv",
    "conversion_record",
    "convert_with_stedgeai",
    "estimator_figures",
    "find_stedgeai",
    "locate_tool",
    "parse_c_info",
    "parse_text_report",
    "run_stedgeai",
    "tool_version",
]
