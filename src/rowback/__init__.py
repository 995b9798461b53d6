"""Rowback: a shadow of every row's history, to catch and undo bad writes."""
