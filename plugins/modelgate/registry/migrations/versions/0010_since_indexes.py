"""Bounded reads: a decision, the model page and the Models index read what they need, not a model's whole past.

- `retrain_decision` and `drift_result` by (model, interval_end): "the decisions since", "the newest drift runs".
- `model_version` by (model, window_end): the versions trained up to a moment.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_retrain_decision_model_end", "retrain_decision", ["model", "interval_end"]),
    ("ix_drift_result_model_end", "drift_result", ["model", "interval_end"]),
    ("ix_model_version_model_window_end", "model_version", ["model", "window_end"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
