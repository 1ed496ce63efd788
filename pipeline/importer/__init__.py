"""Web images into a deduplicated Label Studio project (label-factory import)."""
