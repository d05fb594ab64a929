"""The HTTP service: ``create_app(settings, engine=None)`` builds the FastAPI app (needs the ``serve`` extra)."""
