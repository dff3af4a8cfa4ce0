"""The Textual chat client."""
