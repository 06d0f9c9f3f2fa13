"""Checks tools run on what a user passed in (output paths, command lines) before any expensive work, raising
:class:`~pix2nerf.errors.InputError` that names the problem and the fix; and the exit status for such errors."""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pix2nerf.errors import InputError

INPUT_ERROR_EXIT_CODE = 2
"""The exit status of a tool that stopped on an :class:`InputError`."""
SPACED_EXAMPLE = "input=\"my photo.png\" or 'input=my photo.png'"
"""How to quote a value with spaces, for a command line that has no key to show it with."""


def check_output_folder(folder: str | Path, option: str) -> Path:
    """Raise :class:`InputError` unless ``folder`` is a folder this process can write in, or can be created as one.

    ``option`` is the setting the user passed it as (``"output_dir"``), for the message. Nothing is created: a probe
    file is opened and removed at once in the nearest existing folder.
    """
    folder = Path(folder)
    _check_writable(folder, folder, option, "a folder you can write to")
    return folder


def check_output_file(path: str | Path, option: str) -> Path:
    """Raise :class:`InputError` unless a file can be written at ``path`` (see :func:`check_output_folder`)."""
    path = Path(path)
    fix = "a file path in a folder you can write to"
    if path.is_dir():
        raise InputError(f"{option}={path} is a folder, not a file; pass {option}=<{fix}>")
    _check_writable(path, path.parent, option, fix)
    return path


def _check_writable(given: Path, folder: Path, option: str, fix: str) -> None:
    """Raise :class:`InputError` unless ``folder`` (where ``given`` goes) can be created and written in."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == given else f"lies under {existing}, which is a file"
        raise InputError(f"{option}={given} {where}, not a folder; pass {option}=<{fix}>")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"{option}={given} cannot be written: {existing} is not writable ({reason}); pass {option}=<{fix}> or "
            f"make {existing} writable"
        ) from error


def check_command_line(tool: str, output_folders: Sequence[str] = (), argv: Sequence[str] | None = None) -> None:
    """Check a Hydra tool's command line before Hydra parses it; on a user error, print one line and exit 2.

    An override Hydra cannot parse, typically the second half of an unquoted value with spaces
    (``input=my photo.png``), would end in Hydra's traceback; so would an ``output_folders`` setting that Hydra's run
    folder lies in and that cannot be written (see :func:`check_output_folder`).
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv).overrides
    parser = OverridesParser.create()
    try:
        for index, override in enumerate(overrides):
            try:
                (parsed,) = parser.parse_overrides([override])
            except OverrideParseException as error:
                raise InputError(_unparsable(overrides, index, error)) from error
            value = parsed.value()
            if parsed.key_or_group in output_folders and isinstance(value, str):
                check_output_folder(value, parsed.key_or_group)
    except InputError as error:
        print(f"{tool}: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)


def _unparsable(overrides: Sequence[str], index: int, error: Exception) -> str:
    """The message for ``overrides[index]``, which Hydra cannot parse: how to quote it when it is the rest of a value
    with spaces (``input=my photo.png``), else Hydra's reason on one line."""
    override = overrides[index]
    if "=" in override:
        reason = "; ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip())
        return f"cannot parse the setting {override!r} ({reason}); quote a value with special characters"
    if index == 0 or "=" not in overrides[index - 1]:
        return f"{override!r} is not a key=value setting; quote a value with spaces as a whole: {SPACED_EXAMPLE}"
    key, value = overrides[index - 1].split("=", 1)
    rest = list(itertools.takewhile(lambda item: "=" not in item, overrides[index:]))
    spaced = " ".join([value, *rest])
    return (
        f"{override!r} is not a key=value setting: a value with spaces must be quoted as a whole, "
        f"{key}=\"{spaced}\" or '{key}={spaced}'"
    )
