"""The REST resources, one blueprint per module, all mounted under ``/api``."""

from __future__ import annotations

from .audit import bp as audit_bp
from .auth import bp as auth_bp
from .collaborations import bp as collaborations_bp
from .health import bp as health_bp
from .nodes import bp as nodes_bp
from .organizations import bp as organizations_bp
from .roles import bp as roles_bp
from .run_results import bp as run_results_bp
from .runs import bp as runs_bp
from .tasks import bp as tasks_bp
from .users import bp as users_bp

__all__ = ["BLUEPRINTS"]

BLUEPRINTS = [
    audit_bp,
    auth_bp,
    collaborations_bp,
    health_bp,
    nodes_bp,
    organizations_bp,
    roles_bp,
    run_results_bp,
    runs_bp,
    tasks_bp,
    users_bp,
]
