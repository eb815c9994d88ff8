"""Errors a person can fix, each with a message that says what is wrong and how."""

from __future__ import annotations


class RegressionInputError(ValueError):
    """Input a person can fix: the message says what is wrong and how."""


class CSVTooLargeError(RegressionInputError):
    """The CSV file is over the size limit."""


class CSVFormatError(RegressionInputError):
    """The CSV file cannot be read as a table of numbers with a header."""


class CSVShapeError(RegressionInputError):
    """The table has too few rows or too many or too few columns."""


class ModelSpecError(RegressionInputError):
    """The requested fit does not fit the data (unknown column, bad degree, unknown data set)."""
