"""The names granite-assets gives things in a host's database and in its logs, each written once.

Plain constants, importable without SQLAlchemy: the host's ``env.py`` filter and the command line
use them too.
"""

from __future__ import annotations

import logging
from typing import Final

#: Every table granite-assets creates, its bookkeeping tables included, starts with this, and
#: every constraint and index name carries it.
TABLE_PREFIX: Final = "granite_assets_"

#: The table where granite-assets records the revision a database is at.
VERSION_TABLE: Final = f"{TABLE_PREFIX}alembic_version"

#: The table where granite-assets records, for each revision a database holds, whether it is
#: backward compatible.
COMPATIBILITY_TABLE: Final = f"{TABLE_PREFIX}compatibility"

#: The logger every part of the migration machinery logs to (the library never configures it).
LOGGER_NAME: Final = "granite_assets.migrations"

logger: Final = logging.getLogger(LOGGER_NAME)
