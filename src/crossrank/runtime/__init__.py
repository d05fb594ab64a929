"""Running encoded batches on one device or several."""
