"""Any string as XML text that survives a round trip: ECMA-376's ``_xHHHH_`` escape.

XML 1.0 cannot hold most control characters (``U+0000``-``U+001F`` but tab, newline and
carriage return), lone surrogates (Python's ``surrogateescape`` of file names that are
not UTF-8) or ``U+FFFE``/``U+FFFF``: lxml refuses to write them. Others are written but
do not come back as written: a carriage return becomes a newline in any parser that
re-saves the file (LabelImg's ElementTree does), and ``voc_xml`` strips the whitespace
around every text. ``<``, ``&``, ``>`` and quotes need nothing from us: lxml escapes them
as entities, and every parser undoes that.

The scheme is Office Open XML's (ECMA-376 Part 1, 22.9.2.19 ``ST_Xstring``), chosen
because it is a published one and its escapes are plain text that every XML tool keeps
as it is (LabelImg and CVAT show them and save them back unchanged):

* a character that XML 1.0 cannot hold, a carriage return, and whitespace at either end
  of the text (what ``str.strip`` removes) become ``_xHHHH_``, ``HHHH`` its code point
  in four upper-case hex digits (every such character is below ``U+10000``);
* an underscore followed by ``x`` and four hex digits is escaped itself (``_x005F_``),
  whatever follows them, so the reader never mistakes the original text, or the original
  text followed by an escape, for an escape;
* every other character is written as it is.

``unescape_xml_text`` undoes it. A file written by another tool whose text happens to
hold ``_xHHHH_`` reads as the character it names, as in Office documents.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ESCAPE_LIKE = re.compile(r"_(?=x[0-9A-Fa-f]{4})")
# Characters XML 1.0 cannot hold (section 2.2), plus the carriage return.
_NOT_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|\r")


def _code(char: str) -> str:
    return f"_x{ord(char):04X}_"


def escape_xml_text(text: str) -> str:
    """``text`` with what XML cannot hold, or would not give back, as ``_xHHHH_``."""
    if "_x" in text:
        text = _ESCAPE_LIKE.sub("_x005F_", text)
    text = _NOT_XML.sub(lambda m: _code(m.group(0)), text)
    stripped = text.strip()
    if stripped == text:
        return text
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    if start >= end:  # whitespace only
        return "".join(_code(c) for c in text)
    return (
        "".join(_code(c) for c in text[:start])
        + text[start:end]
        + "".join(_code(c) for c in text[end:])
    )


def unescape_xml_text(text: str) -> str:
    """Undo ``escape_xml_text``: every ``_xHHHH_`` becomes the character it names."""
    if "_x" not in text:
        return text
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
