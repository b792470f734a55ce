"""The bridge between MLflow's model registry and the `model_versions` table.

Stages and aliases, promotion gates, rollback, reconciliation and artifact checksums live
here (issue 4). The schema it relies on (one production version per model type, enforced by
a partial unique index) is already in place.
"""
