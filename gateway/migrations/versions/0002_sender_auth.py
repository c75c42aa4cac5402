"""messages.sender_auth: how the sender of a stored message was authenticated

Revision ID: sender_auth
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'sender_auth'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_auth', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('sender_auth')
