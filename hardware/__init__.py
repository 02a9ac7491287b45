"""Hardware interfaces and real drivers (imported lazily)."""
