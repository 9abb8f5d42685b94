"""UPSNet: an adapter for the official outputs, and a runnable UPSNet-style baseline."""
