"""The vocable server (FastAPI): `vocable serve`, or `create_app(ServerOptions(...))` in your own ASGI host."""

from .app import ApiError, ModelCache, ServerOptions, create_app, serve

__all__ = ["ApiError", "ModelCache", "ServerOptions", "create_app", "serve"]
