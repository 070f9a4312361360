"""What the engine's parts share, passed to them explicitly: the store, the settings, the hosts, the data-dir
layout, the store id and the router. The Engine builds one and hands it to Pipeline, Cleaner, the reconcile pass,
rollback and releases; none of them receives the Engine itself (a part that needs another part, such as the
pipeline, is given it)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.config import Settings
    from console.engine.hosts import Hosts
    from console.engine.paths import Paths
    from storage.db import Store


@dataclass(frozen=True)
class Context:
    store: Store
    settings: Settings
    hosts: Hosts
    paths: Paths
    store_id: str

    @functools.cached_property
    def router(self):
        """Where routes go (routes.py: the traefik-file directory or Caddy's admin API), made when first used: the
        store-only commands start without it."""
        from console.engine import routes
        return routes.make(self.settings, self.paths)
