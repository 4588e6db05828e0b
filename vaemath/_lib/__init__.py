"""Private helpers shared by vaemath's modules (not public API)."""
