"""Case server."""
