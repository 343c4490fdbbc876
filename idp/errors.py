"""Exceptions that carry a message fit to show an operator as one line."""


class IdpError(Exception):
    """An expected failure: the CLI prints its message and exits non-zero."""


class ConfigurationError(IdpError):
    """A setting has a value idp cannot run with."""


class KeyStoreError(IdpError):
    """The key store refused an operation or is unreadable."""
