"""The core below every edge: tokenisation, batching, ranking, inputs, errors, settings."""
