"""Docking gateway service."""
