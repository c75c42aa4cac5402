"""proxies: parents, guardians and caregivers who write for a patient; patients.birth_date

A proxy row belongs to one patient (one row per patient and address); its names, address
and relation are sealed like a patient's, with a blind index of the address for look-ups.
Threads and messages remember the proxy they were with; a staff answer held back from a
proxy says why (messages.held); a staff token with party "patient" sends an answer to the
patient's own address; an invite may be a proxy's (invites.proxy_id).

Revision ID: proxies
Revises: patient_language
"""
from alembic import op
import sqlalchemy as sa

revision = 'proxies'
down_revision = 'patient_language'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'proxies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('first_name', sa.Text(), nullable=False),
        sa.Column('last_name', sa.Text(), nullable=False),
        sa.Column('email', sa.Text(), nullable=False),
        sa.Column('email_index', sa.String(length=64), nullable=False),
        sa.Column('relation', sa.Text(), nullable=False),
        sa.Column('scope', sa.String(length=200), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('password_hash', sa.String(length=200), nullable=True),
        sa.Column('terms_version', sa.String(length=40), nullable=True),
        sa.Column('terms_accepted_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('patient_id', 'email_index', name='uq_proxies_patient_address'),
    )
    op.create_index('ix_proxies_patient_id', 'proxies', ['patient_id'])
    op.create_index('ix_proxies_email_index', 'proxies', ['email_index'])
    with op.batch_alter_table('patients') as batch:
        batch.add_column(sa.Column('birth_date', sa.Text(), nullable=True))
    with op.batch_alter_table('threads') as batch:
        batch.add_column(sa.Column('proxy_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('outside_scope', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_foreign_key('fk_threads_proxy_id', 'proxies', ['proxy_id'], ['id'])
        batch.create_index('ix_threads_proxy_id', ['proxy_id'])
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('proxy_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('held', sa.String(length=32), nullable=True))
        batch.create_foreign_key('fk_messages_proxy_id', 'proxies', ['proxy_id'], ['id'])
    with op.batch_alter_table('tokens') as batch:
        batch.add_column(sa.Column('party', sa.String(length=16), nullable=True))
    with op.batch_alter_table('invites') as batch:
        batch.add_column(sa.Column('proxy_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_invites_proxy_id', 'proxies', ['proxy_id'], ['id'])
        batch.create_index('ix_invites_proxy_id', ['proxy_id'])


def downgrade() -> None:
    with op.batch_alter_table('invites') as batch:
        batch.drop_index('ix_invites_proxy_id')
        batch.drop_constraint('fk_invites_proxy_id', type_='foreignkey')
        batch.drop_column('proxy_id')
    with op.batch_alter_table('tokens') as batch:
        batch.drop_column('party')
    with op.batch_alter_table('messages') as batch:
        batch.drop_constraint('fk_messages_proxy_id', type_='foreignkey')
        batch.drop_column('held')
        batch.drop_column('proxy_id')
    with op.batch_alter_table('threads') as batch:
        batch.drop_index('ix_threads_proxy_id')
        batch.drop_constraint('fk_threads_proxy_id', type_='foreignkey')
        batch.drop_column('outside_scope')
        batch.drop_column('proxy_id')
    with op.batch_alter_table('patients') as batch:
        batch.drop_column('birth_date')
    op.drop_index('ix_proxies_email_index', table_name='proxies')
    op.drop_index('ix_proxies_patient_id', table_name='proxies')
    op.drop_table('proxies')
