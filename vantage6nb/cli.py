"""The ``v6nb`` command: one entry point that hands each part's subcommands to that part."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with a `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("server_app.cli", "run and manage a server (start, import, ...)"),
    "node": ("node_app.cli", "run and manage a data-station node (start, create-private-key, ...)"),
    "demo": ("vantage6nb.demo.cli", "start a local demo network: a server and 3 nodes"),
    "algorithm": ("vantage6nb.algorithm.cli", "build and push algorithm images"),
}


def _usage() -> str:
    lines = ["usage: v6nb <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "  version    print the version",
        "",
        "Run 'v6nb <command> --help' for a command's options.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("version", "--version"):
        from ._version import __version__

        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(f"v6nb: unknown command '{args[0]}'.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
