"""Run a click CLI so user errors print one clear line and exit 2, never a traceback; bugs still raise."""

from __future__ import annotations

import click

from cxr_fedsynth.common.errors import CxrError

USER_ERROR_EXIT = 2


def run_cli(command: click.Command, args: list[str] | None = None) -> int:
    """Invoke ``command``; a CxrError becomes ``error: <message>`` on stderr and exit code 2."""
    try:
        returned = command.main(args=args, standalone_mode=False)  # returns the code of a click Exit
    except CxrError as exc:
        click.echo(f"error: {exc}", err=True)
        return USER_ERROR_EXIT
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return returned if isinstance(returned, int) else 0
