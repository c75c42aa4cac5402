"""outbox.claimed_by: who holds a row's lease (host, process, start), for prompt redelivery

Revision ID: outbox_claim_owner
Revises: proxies
"""
from alembic import op
import sqlalchemy as sa

revision = 'outbox_claim_owner'
down_revision = 'proxies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
        batch.create_index('ix_outbox_claimed_by', ['claimed_by'])


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index('ix_outbox_claimed_by')
        batch.drop_column('claimed_by')
