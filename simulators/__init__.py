"""Simulated hardware and scenarios for testers."""
