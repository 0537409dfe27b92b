"""The exit status of every ``medchain`` command (README, "Exit status").

Scripts branch on these; each failing command also prints one line on stderr
saying what is wrong (never a traceback).
"""

from __future__ import annotations

import click

OK = 0
ERROR = 1  # bad input: a missing or malformed file, a wrong passphrase, a bad value
USAGE = 2  # the command line itself (click's own status for usage errors)
UNPINNED = 3  # evidence holds together, but no genesis was pinned to check it against
UNREACHABLE = 4  # no node at the socket, or the connection to it was lost
REJECTED = 5  # the node refused the request or transaction before ordering it
FAILED = 6  # the transaction was ordered, and its chaincode refused it (the reason says why)
NOT_VERIFIED = 7  # evidence or a disclosure did not verify
PENDING = 8  # the transaction was not committed within the wait (it may still be)


class Unreachable(click.ClickException):
    exit_code = UNREACHABLE


class Rejected(click.ClickException):
    exit_code = REJECTED


class Failed(click.ClickException):
    exit_code = FAILED


class Pending(click.ClickException):
    exit_code = PENDING
