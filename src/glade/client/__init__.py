"""Client side: :class:`ClientApp` and mods (middleware around handlers)."""

from glade.client.app import ClientApp, Handler, Mod

__all__ = ["ClientApp", "Handler", "Mod"]
