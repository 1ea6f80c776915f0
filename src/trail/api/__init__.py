"""trail's HTTP API: an ASGI application (FastAPI, served by uvicorn), one module per resource.

``trail up`` embeds it in a thread; ``trail serve`` runs it as its own production role.
:func:`trail.api.app.create_app` builds it from the application services
(:class:`trail.service.ApiServices`), never from the store directly.
"""
