"""Hiding the passwords of URLs typed where a revision or an argument was expected.

Free of SQLAlchemy, so that the command line can use it without the ``db`` extra.
"""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/\s:@]*:)\S*@")


def hide_passwords(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``.

    Messages can repeat what the caller typed, and a URL typed in the wrong place (without
    ``--url``, say, or as a revision) would otherwise show its password.
    """
    return _URL_PASSWORD.sub(r"\g<1>***@", text)
