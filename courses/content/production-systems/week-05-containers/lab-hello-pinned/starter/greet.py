"""Greets someone by name. Fill in greet() and keep the command-line part working."""

import sys


def greet(name: str = "world") -> str:
    raise NotImplementedError("return 'Hello, <name>!'")


if __name__ == "__main__":
    print(greet(sys.argv[1] if len(sys.argv) > 1 else "world"))
