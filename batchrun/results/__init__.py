"""The read side: results read back, exported and reported; it never imports the write side."""

from batchrun.results.export import export
from batchrun.results.read import read, read_table
from batchrun.results.report import build_report, format_report

__all__ = ["build_report", "export", "format_report", "read", "read_table"]
