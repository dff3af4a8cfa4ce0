"""A seq2seq chatbot with attention that you train yourself."""

__version__ = "0.1.0"
