"""patients.language: the roster's optional ISO 639-1 language code

Revision ID: patient_language
Revises: privacy
"""
from alembic import op
import sqlalchemy as sa

revision = 'patient_language'
down_revision = 'privacy'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('patients') as batch:
        batch.add_column(sa.Column('language', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('patients') as batch:
        batch.drop_column('language')
