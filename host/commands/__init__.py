"""One module per `k210` subcommand.

Each module defines `add_parser(subparsers)` and `run(args) -> int`. Modules import heavy
libraries (TensorFlow, nncase) inside `run`, so `k210 --help` and `k210 lint x.tflite` stay fast.
"""

COMMANDS = (
    "train",
    "freeze",
    "convert",
    "compile",
    "inspect",
    "verify",
    "explain",
    "lint",
    "board",
    "hil",
    "flash",
    "deploy",
    "completion",
)
