"""sentry_sim."""
