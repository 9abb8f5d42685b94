"""User-supplied strings made safe for messages and for rich output.

File names, category names, image ids and paths come from the user's files
and command line: they may hold rich markup (``[/bold]``, ``run[final]``),
matplotlib mathtext (``$x^$``), lone surrogates that no encoder accepts, or be
megabytes long. Everything that puts
such a string into a message or on the console goes through these helpers;
nothing here prints.
"""

from __future__ import annotations

import reprlib

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlong = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def short_repr(value: object) -> str:
    """A bounded ``repr`` of a value read from a user's file, for error messages.

    Deeply nested or self-referential containers, huge strings and numbers are
    cut with ``...``; the result is at most a few hundred characters and costs
    no recursion proportional to the value's depth.
    """
    try:
        return _repr.repr(value)
    except Exception:  # a hostile __repr__ (never in parsed JSON/YAML) must not hide the real error
        return f"<{type(value).__name__}>"


_CONTROLS = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7F)}


def printable(text: object) -> str:
    """``str(text)`` safe to print as one line on any UTF-8 stream.

    Lone surrogates (undecodable file names) become ``\\udcXX`` and control
    characters ``\\n``, ``\\x1b``...: a file name can neither break a
    one-line message nor send terminal escape sequences. Everything else is
    unchanged.
    """
    s = str(text).translate(_CONTROLS)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def markup_escape(text: object) -> str:
    """:func:`printable` text with rich markup escaped: ``[/bold]`` prints as itself."""
    from rich.markup import escape

    return escape(printable(text))


def mpl_escape(text: object) -> str:
    """:func:`printable` text for a matplotlib label: ``$`` escaped, so a name never starts mathtext.

    Unescaped, a category named ``$x^$`` makes matplotlib fail to draw the
    whole figure.
    """
    return printable(text).replace("$", r"\$")


def near_image_id(wanted: object, candidates) -> object | None:
    """The candidate image id a user most likely meant for ``wanted``, or ``None``.

    Catches the usual slips: the same id as another type (``"139"`` for
    ``139``), a zero-padded file stem (``"000000000139"`` for ``139``), and a
    file stem holding the id (``"aachen_000000_000019_leftImg8bit"`` or
    ``"..._gtFine_panoptic"`` for ``"aachen_000000_000019"``). Only a match
    that is one of these is returned: it is a hint, not a guess.
    """
    text = str(wanted)
    prefixed = None
    for c in candidates:
        if c == wanted:
            continue
        s = str(c)
        if s == text:
            return c
        if s.isdigit() and text.isdigit() and int(s) == int(text):
            return c
        if prefixed is None and (s.startswith(text + "_") or s.startswith(text + ".")):
            prefixed = c
    return prefixed
