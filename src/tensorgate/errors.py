"""Errors that tensorgate reports to users as one-line messages.

Every error a user can cause (bad file, bad pipeline, bad input data) is a
``TensorgateError``; the CLI prints ``str(error)`` and exits 1 (or 2 for usage
errors).  Anything else escaping is a bug and shows a traceback with ``--verbose``.
"""


class TensorgateError(Exception):
    """Base class of all errors meant for the user."""

    exit_code = 1


class UsageError(TensorgateError):
    """The command line or an option value is malformed."""

    exit_code = 2


class FrontendError(TensorgateError):
    """An input model cannot be read or lifted into the IR."""


class VerifyError(TensorgateError):
    """The IR breaks an invariant (shape, type, format, dangling value)."""


class ParseError(TensorgateError):
    """IR text or pipeline text cannot be parsed."""


class PipelineError(TensorgateError):
    """A pass pipeline is malformed or a pass failed."""

    exit_code = 2


class PassError(TensorgateError):
    """A pass could not transform the module (bad option for this model, ...)."""


class ArtifactError(TensorgateError):
    """An artifact directory is incomplete, was changed after it was written, or names a
    file outside itself."""


class ExecutionError(TensorgateError):
    """A module cannot be executed on the given inputs."""
