"""One training engine for every model: loop, selection, checkpoints/resume, logging."""
