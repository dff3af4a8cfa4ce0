"""`chatbot serve`: the chat in a browser. Each browser tab gets its own `chatbot chat` process,
drawn in the page by textual-serve's terminal; every tab writes to the same log (WAL).

Safe by default: the server listens on a loopback address unless `--public` says otherwise, and
then warns that there is no authentication. The page loads nothing from the internet: its script,
styles and font come from the installed textual-serve package, through this server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.i18n import tr

PAGE = Path(__file__).parent / "app" / "web"  # our page, app_index.html: textual-serve fills it in


def is_loopback(host: str) -> bool:
    """True for a name or address that only this machine can reach."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def chat_command(chat_args: list[str]) -> str:
    """The command each browser tab runs: this Python's `chatbot chat`, with the server's flags."""
    return shlex.join([sys.executable, "-m", "chatbot", "chat", *chat_args])


def serve(host: str, port: int, public: bool, chat_args: list[str]) -> None:
    """Serve the chat until Ctrl+C; the tabs' chat processes end with the server."""
    if not is_loopback(host) and not public:
        raise ChatbotError(
            tr("--host {host} can be reached from other machines: add --public to serve there anyway", host=host)
        )
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ChatbotError(tr("serving needs the package textual-serve (pip install textual-serve)")) from None
    if not is_loopback(host):
        print(
            tr(
                "chatbot: warning: serving on {host}:{port} with no authentication: anyone who reaches it can chat "
                "and read the log's conversations through the app",
                host=host,
                port=port,
            ),
            file=sys.stderr,
        )
    with socket.socket() as probe:  # a taken port is one line, not aiohttp's traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ChatbotError(
                tr("cannot listen on {host}:{port} ({strerror})", host=host, port=port, strerror=err.strerror or err)
            ) from None
    from aiohttp.web_runner import GracefulExit

    server = Server(chat_command(chat_args), host=host, port=port, title="chatbot", templates_path=PAGE)

    def stop() -> None:  # Ctrl+C (SIGINT) or SIGTERM: the tabs' chats first, then the server
        end_processes(descendants(os.getpid()))
        raise GracefulExit()

    server.request_exit = stop  # what textual-serve calls on either signal
    print(tr("chatbot: serving the chat on http://{host}:{port} (Ctrl+C stops)", host=host, port=port), file=sys.stderr)
    try:
        server.serve()
    finally:
        end_processes(descendants(os.getpid()))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), read from /proc; none where there is
    no /proc. Taken whole before any is signalled, so a chat whose shell dies first is found."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_processes(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM each, then SIGKILL any still running after `grace` seconds (the log is safe
    either way: every write commits before the chat shows it)."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal_number)
        deadline = time.monotonic() + grace
        while (pids := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


def running(pid: int) -> bool:
    """True while `pid` lives (a zombie, ended but not yet reaped by its parent, has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
