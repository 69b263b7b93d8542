"""The model store: scanning, loading, versions, warm-up, batching and export. No HTTP here."""
