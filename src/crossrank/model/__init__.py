"""Finding, loading and checking a model; the device and dtype policy."""
