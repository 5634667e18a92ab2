"""Matplotlib figures, one module per command. Imported lazily: matplotlib is slow to import."""
