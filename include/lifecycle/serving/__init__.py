"""The serving gateway: an ASGI app that routes predictions across registered versions by traffic weight."""
