"""The shadow store protocol and its backends."""
