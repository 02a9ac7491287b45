"""RFC 6962 / RFC 9162 transparency log core and C2SP formats."""
