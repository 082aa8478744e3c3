"""exchange_sim."""
