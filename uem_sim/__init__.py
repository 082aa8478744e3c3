"""uem_sim."""
