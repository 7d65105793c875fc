"""One error family for every problem a user can fix: each message names the file and the fix.

CLIs catch :class:`CxrError`, print its message and exit non-zero without a traceback; anything else is a bug
and still raises.
"""

from __future__ import annotations


class CxrError(Exception):
    """Base of all user-facing errors."""


class DataError(CxrError):
    """A data folder, image or label table cannot be used as it is."""


class ConfigError(CxrError):
    """A configuration value (YAML, run config, CLI option) is wrong."""


class BudgetExceededError(CxrError):
    """A DP round would push a site past its privacy budget."""


class PolicyRefusal(CxrError):
    """A request falls outside the site's own policy (a cap, a mechanism, a second release); the site refuses it."""


class ArtifactError(CxrError):
    """A published generator or checkpoint is missing, incomplete or not of this format."""
