"""The package's one logging setup, for the jobs, the notebooks and library calls alike.

Why it matters: the DataFrame functions ship DEKs to the executors inside the pickled batch
function, and PySpark hands that pickle to the JVM through py4j, whose loggers print every
command they send at DEBUG ("Command to send: ..."), the pickle included. A notebook user
who turns on ``logging.basicConfig(level=logging.DEBUG)`` would print the keys. So:

- :func:`guard_key_loggers` holds py4j (and the cloud SDKs, which log request bodies at
  DEBUG) at WARNING and puts :class:`KeyCarrierFilter` on those loggers themselves, so no
  handler (the package's, the user's root handler, a notebook's) ever receives such a
  record, even if someone lowers their level again. Every function that puts keys into a
  closure calls it; it is cheap and idempotent.
- :func:`setup_logging` is what an entry point or notebook calls: the guard, a handler
  with the filter when the process has none, and the package's level.
"""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "envelope_encryption"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# py4j prints every command to the JVM (pickled closures with their keys) at DEBUG.
KEY_CARRIERS = ("py4j", "py4j.java_gateway", "py4j.clientserver", "py4j.protocol")
# The SDKs log request and response details (bodies with wrapped keys) at DEBUG.
NOISY = ("botocore", "boto3", "urllib3", "azure")


class KeyCarrierFilter(logging.Filter):
    """Drops py4j's records below WARNING, and any py4j record of a command or answer.

    A filter on a logger sees only the records made by that logger, hence one instance on
    each of :data:`KEY_CARRIERS` and one on the package's handler (for records that
    propagate from children of those loggers).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "py4j" and not record.name.startswith("py4j."):
            return True
        if record.levelno < logging.WARNING:
            return False
        text = str(record.msg)
        return not (text.startswith("Command to send") or text.startswith("Answer received"))


_FILTER = KeyCarrierFilter()


def guard_key_loggers() -> None:
    """Keep every logger that can print key material at WARNING, filtered at the source."""
    for name in KEY_CARRIERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for name in NOISY:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Set up logging for a job or a notebook; returns the package's logger.

    The root logger gets a handler (with the filter) only if it has none: a notebook's or
    a user's own configuration is kept, and the key carriers are guarded either way.
    """
    guard_key_loggers()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(logging.DEBUG if verbose else logging.INFO)
    return package
