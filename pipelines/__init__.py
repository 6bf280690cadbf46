"""Pipeline definitions (``training``), the compiler entry point and the local runner."""
