"""Networks and losses: shared blocks and one module per model."""
