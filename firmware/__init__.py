"""Recorder firmware: the body-worn recorder application (see docs and DESIGN)."""
