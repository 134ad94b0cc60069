"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
<%
    proposal = config.attributes.get("granite_assets_proposal")
%>
revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}

# Whether every older release that worked with the database before this revision keeps working
# after it, so that it may run against a database this revision migrated: True only for additions
# (a table, a nullable column or one with a server default, an index). See "Expand and contract"
# in the deployment docs.
% for line in (proposal.comment() if proposal else ["No value was proposed: decide it in review."]):
# ${line}
% endfor
backward_compatible: bool = ${repr(proposal.backward_compatible if proposal else False)}

# If it needs longer than the call's limits, declare ddl_lock_timeout and statement_timeout (seconds).


def upgrade() -> None:
    """Apply this revision."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Revert this revision."""
    ${downgrades if downgrades else "pass"}
