"""The REST API of ``rowback run``: read-only routers over a live store.

Each router is one concern (reading history, status); later ones (revert, incidents,
policies) are one module and one ``include_router`` line in ``app.py``.
"""

from rowback.api.app import create_app

__all__ = ["create_app"]
