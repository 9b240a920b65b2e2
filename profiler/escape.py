"""Text that came from a file or a model name is data: made safe for the terminal, markdown and CSV.

>>> printable_text("a\\x1b]0;t\\x07\\x1b[2Jb\\nc")
'a\\\\x1b]0;t\\\\x07\\\\x1b[2Jb\\\\nc'
>>> markdown_cell("<svg onload=x>|`*_ tiny_cnn")
'&lt;svg onload=x&gt;\\\\|\\\\`\\\\*\\\\_ tiny_cnn'
>>> csv_cell("=cmd|' -C calc'!A0"), csv_cell("-2"), csv_cell(-2)
("'=cmd|' -C calc'!A0", "'-2", -2)
"""

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char):
    if char == " " or char.isprintable():
        return char
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def printable_text(text):
    """One line with no control characters: escape sequences, newlines and bidi overrides shown as \\xNN."""
    text = str(text)
    return text if text.isprintable() else "".join(map(_escape, text))


_MARKDOWN = re.compile(r"([\\`*|~\[\]$])")  # "$": GitHub renders $…$ as math; "_" inside a word is literal


def markdown_cell(text):
    """A table cell of GitHub markdown: one line, HTML and markdown syntax taken literally."""
    text = printable_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN.sub(r"\\\1", text)
    return re.sub(r"(^|\W)_|_(\W|$)", lambda m: m.group(0).replace("_", "\\_"), text)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A string that a spreadsheet would run as a formula gets a leading apostrophe (OWASP's rule);
    control characters other than a newline (ESC, BEL: a terminal that shows the file runs them) are
    shown as \\xNN."""
    if isinstance(value, str):
        if not value.replace("\n", "").isprintable():
            value = "\n".join(printable_text(part) for part in value.split("\n"))
        if value.startswith(FORMULA_START):
            return "'" + value
    return value


def from_csv_cell(value):
    """The text csv_cell was given (a reader of this tool's own CSV exports)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def figure_text(text, limit=None):
    """Text for a matplotlib label: one printable line, '$' taken literally (no mathtext, while the
    axes' own tick labels still render theirs), cut to `limit` characters with an ellipsis.

    >>> print(figure_text("$x$ net", limit=5))
    \\$x\\$ …
    """
    text = printable_text(text)
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("$", r"\$")
