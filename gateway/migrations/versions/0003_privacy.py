"""privacy at rest: encrypted PHI columns become TEXT, addresses get a blind index

Encrypted values are longer than the plain ones, so the length-limited columns that now
hold ciphertext become TEXT.  patients.email_index (HMAC of the normalised address) takes
over the look-ups and makes one address belong to one patient; the plain index on
patients.email goes.  Values stored before this revision stay readable as they are and
are sealed by `portal-gateway keys rotate`; the address index is filled at start.

Revision ID: privacy
Revises: sender_auth
"""
from alembic import op
import sqlalchemy as sa


revision = 'privacy'
down_revision = 'sender_auth'
branch_labels = None
depends_on = None

WIDENED = [("patients", "first_name", 200), ("patients", "last_name", 200),
           ("patients", "email", 320), ("outbox", "recipient", 320),
           ("invites", "email", 320), ("quarantine", "mail_from", 320)]


def upgrade() -> None:
    for table, column, length in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=length),
                                  type_=sa.Text())
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_email')
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_patients_email_index', ['email_index'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_email_index')
        batch_op.drop_column('email_index')
        batch_op.create_index('ix_patients_email', ['email'], unique=False)
    for table, column, length in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.Text(),
                                  type_=sa.String(length=length))
