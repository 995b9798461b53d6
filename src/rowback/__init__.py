"""Rowback: a shadow of every row\x27s history, to catch and undo bad writes."""
