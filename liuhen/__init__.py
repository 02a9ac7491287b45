"""The `liuhen` command and the offline tools that sit behind it (verify, keys)."""
