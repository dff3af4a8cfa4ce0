"""`python chat.py [flags]` is `chatbot chat [flags]`: the terminal chat client."""

import sys

from chatbot.cli import main

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))
