"""The HTTP layer: routes, schemas, errors, settings and the lifespan. No model logic here."""

__version__ = "0.1.0"
