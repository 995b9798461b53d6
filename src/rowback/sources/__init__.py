"""Where changes come from: one folder per source."""
